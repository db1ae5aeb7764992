"""python-telegram-bot's HTTP layer on aiohttp instead of httpx.

Every update costs at least one outgoing Bot API call (the reply; a button press also its
callback answer), and in the benchmark's profile httpx was the largest single cost of the bot
process. aiohttp's C-accelerated HTTP parser and simpler connection pool do the same work for
less CPU. Requests without files go as JSON bodies. PTB supports this through ``BaseRequest``;
errors are mapped to PTB's own (``TimedOut``, ``NetworkError``), so retries and the fail-safe
paths behave as with httpx.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
from telegram._utils.defaultvalue import DefaultValue
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData

__all__ = ["AiohttpRequest"]

_JSON = {"Content-Type": "application/json"}


class AiohttpRequest(BaseRequest):
    """A ``BaseRequest`` on one ``aiohttp.ClientSession``."""

    __slots__ = ("_connect", "_pool", "_pool_size", "_read", "_session", "_write")

    def __init__(
        self,
        connection_pool_size: int = 256,
        read_timeout: float | None = 5.0,
        write_timeout: float | None = 5.0,
        connect_timeout: float | None = 5.0,
        pool_timeout: float | None = 5.0,
    ) -> None:
        self._pool_size = connection_pool_size
        self._read, self._write, self._connect = read_timeout, write_timeout, connect_timeout
        self._pool = pool_timeout
        self._session: aiohttp.ClientSession | None = None

    @property
    def read_timeout(self) -> float | None:
        return self._read

    async def initialize(self) -> None:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._pool_size, limit_per_host=self._pool_size)
            self._session = aiohttp.ClientSession(
                connector=connector, headers={"User-Agent": self.USER_AGENT}
            )

    async def shutdown(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: Any = BaseRequest.DEFAULT_NONE,
        write_timeout: Any = BaseRequest.DEFAULT_NONE,
        connect_timeout: Any = BaseRequest.DEFAULT_NONE,
        pool_timeout: Any = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        if self._session is None or self._session.closed:
            raise RuntimeError("This AiohttpRequest is not initialized!")
        read = self._read if isinstance(read_timeout, DefaultValue) else read_timeout
        connect = self._connect if isinstance(connect_timeout, DefaultValue) else connect_timeout
        pool = self._pool if isinstance(pool_timeout, DefaultValue) else pool_timeout
        # aiohttp's "connect" covers waiting for a pooled connection; it has no write timeout
        # (PTB's write timeout only matters for large uploads, which this bot does not make)
        timeout = aiohttp.ClientTimeout(total=None, connect=pool, sock_connect=connect, sock_read=read)
        body: Any = None
        headers: dict[str, str] | None = None
        if request_data is not None:
            if request_data.multipart_data:
                form = aiohttp.FormData()
                for name, value in request_data.json_parameters.items():
                    form.add_field(name, value)
                for name, (filename, content, mimetype) in request_data.multipart_data.items():
                    form.add_field(name, content, filename=filename, content_type=mimetype)
                body = form
            else:
                # JSON, which the Bot API accepts for every request without files: one C-encoded
                # dump instead of aiohttp's urlencoding of each field (about 35 us per request)
                body = json.dumps(request_data.parameters).encode()
                headers = _JSON
        try:
            request = self._session.request(method, url, data=body, headers=headers, timeout=timeout)
            async with request as response:
                return response.status, await response.read()
        except (TimeoutError, aiohttp.ServerTimeoutError) as error:
            raise TimedOut from error
        except aiohttp.ClientError as error:
            # the type only: an aiohttp message may quote the URL, and the URL holds the token
            raise NetworkError(f"aiohttp.{type(error).__name__}") from error
