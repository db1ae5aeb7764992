"""The standard proxy variables (HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, NO_PROXY, also in
lower case) for every request to Telegram, as ``python -m bot check`` honours them.

The bot's requests go through python-telegram-bot's default HTTPXRequest, and httpx reads the
variables itself (``trust_env``, on by default, and no custom transport, which would switch
them off), so the bot and ``check`` take the same route. This module only tells which proxy
that is, for the start-up log line.
"""

from __future__ import annotations

import urllib.request
from urllib.parse import urlsplit


def proxy_for(url: str) -> str | None:
    """The proxy the environment names for ``url``, or None (none set, or NO_PROXY)."""
    parts = urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy or not parts.hostname:
        return None
    host = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
    if urllib.request.proxy_bypass_environment(host, proxies):  # type: ignore[attr-defined]
        return None
    return proxy


def shown(proxy: str) -> str:
    """A proxy URL fit for a log line: without a user name or password."""
    parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    where = parts.hostname or "?"
    return f"{parts.scheme}://{where}" + (f":{parts.port}" if parts.port else "")
