"""The standard proxy variables (HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, NO_PROXY, also in
lower case) for every request to Telegram, as ``python -m bot check`` honours them.

The bot's aiohttp request class (bot/http.py) goes direct. When a proxy applies to the Bot
API's URL, the bot's requests are made with python-telegram-bot's HTTPXRequest instead: httpx
reads the variables itself (``trust_env``, on by default, and no custom transport, which
would switch them off), so the bot and ``check`` take the same route.
"""

from __future__ import annotations

import urllib.request
from urllib.parse import urlsplit

from telegram.request import BaseRequest, HTTPXRequest

from bot.http import AiohttpRequest

#: the same timeouts as bot/http.py's defaults
TIMEOUTS = {"read_timeout": 5.0, "write_timeout": 5.0, "connect_timeout": 5.0, "pool_timeout": 5.0}


def proxy_for(url: str) -> str | None:
    """The proxy the environment names for ``url``, or None (none set, or NO_PROXY)."""
    parts = urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy or not parts.hostname:
        return None
    host = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
    if urllib.request.proxy_bypass_environment(host, proxies):
        return None
    return proxy


def shown(proxy: str) -> str:
    """A proxy URL fit for a log line: without a user name or password."""
    parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    where = parts.hostname or "?"
    return f"{parts.scheme}://{where}" + (f":{parts.port}" if parts.port else "")


def telegram_request(base_url: str, connection_pool_size: int = 256) -> BaseRequest:
    """The request object for Bot API calls to ``base_url``: through the environment's proxy
    where one applies, else direct over aiohttp."""
    if proxy_for(base_url) is not None:
        return HTTPXRequest(connection_pool_size=connection_pool_size, **TIMEOUTS)
    return AiohttpRequest(connection_pool_size=connection_pool_size, **TIMEOUTS)
