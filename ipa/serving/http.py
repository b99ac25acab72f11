"""HTTP for the router and stage servers and the router's client, on aiohttp.

The servers see one narrow interface, a handler from ``Request`` to ``Response``, so the V2
routes (ipa.serving.v2) stay plain functions of a request that tests can call without a socket,
and aiohttp carries the wire: HTTP/1.1 parsing, keep-alive, chunked uploads, size limits and
malformed-request answers.
"""
from __future__ import annotations

import asyncio
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Mapping, NamedTuple
from urllib.parse import parse_qs

import aiohttp
from aiohttp import web

MAX_BODY = 64 * 1024 * 1024  # above the largest batch on the wire: 8 frames of 640 x 640 FP32 are 39 MB binary


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # names in lower case
    body: bytes


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Request], Awaitable[Response]]


def _server(handler: Handler) -> web.Server:
    async def adapt(request: web.BaseRequest) -> web.Response:
        body = await request.read()
        ours = Request(request.method, request.path, parse_qs(request.query_string),
                       {k.lower(): v for k, v in request.headers.items()}, body)
        try:
            response = await handler(ours)
        except Exception as e:  # a handler bug answers 500 and the server goes on serving
            response = Response(500, f'{{"error": "internal error: {type(e).__name__}"}}'.encode())
        return web.Response(status=response.status, body=response.body,
                            headers={"Content-Type": response.content_type, **response.headers})

    loop = asyncio.get_running_loop()

    def request(message, payload, protocol, writer, task) -> web.BaseRequest:
        return web.BaseRequest(message, payload, protocol, writer, task, loop, client_max_size=MAX_BODY)

    # the low-level server: one handler for every path, so no application router in the way
    return web.Server(adapt, request_factory=request, access_log=None)


async def serve(handler: Handler, host: str, port: int) -> web.BaseRunner:
    """Start serving ``handler`` on host:port; ``await runner.cleanup()`` stops it."""
    runner = web.ServerRunner(_server(handler), handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, reuse_address=True, backlog=1024).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner


def log(msg: str) -> None:
    """A server process's log line (stderr, which its parent sends to the process's log file)."""
    print(f"{time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


async def serve_until_signalled(handler: Handler, host: str, port: int, banner: str,
                                before_close: Callable[[], Awaitable[None]] | None = None) -> None:
    """Serve ``handler`` on host:port until SIGTERM or SIGINT, then stop.
    ``before_close`` runs after the signal while the server still answers (a stage's drain).
    ``banner`` is logged once the socket listens: the line a process's parent may wait for."""
    runner = await serve(handler, host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log(banner)
    try:
        await stop.wait()
        if before_close is not None:
            await before_close()
    finally:
        await runner.cleanup()


class Reply(NamedTuple):
    status: int
    body: bytes
    headers: Mapping[str, str]  # case-insensitive


class HttpError(Exception):
    """The peer could not be reached or broke the connection: the request's outcome is unknown."""


class Client:
    """Keep-alive connections to one host:port (an aiohttp session, opened on first use)."""

    def __init__(self, host: str, port: int, timeout_s: float = 60.0):
        self.host, self.port, self.timeout_s = host, port, timeout_s
        netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.base = f"http://{netloc}"
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # no pool limit: the router bounds what it sends by the endpoint's replicas; no cookie
            # jar and no decompression, which the V2 peers never use and which cost every response
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, force_close=False),
                timeout=aiohttp.ClientTimeout(total=None, connect=5.0),
                headers={"Content-Type": "application/json"}, skip_auto_headers=("User-Agent",),
                cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False)
        return self._session

    def _timeout(self, read_s: float) -> aiohttp.ClientTimeout:
        # one object per distinct read timeout, not one per request (the hot path)
        timeout = self._timeouts.get(read_s)
        if timeout is None:
            timeout = self._timeouts[read_s] = aiohttp.ClientTimeout(total=None, connect=5.0, sock_read=read_s)
        return timeout

    async def request(self, method: str, path: str, body: bytes = b"", timeout_s: float | None = None,
                      headers: dict[str, str] | None = None) -> Reply:
        session = self._open()
        timeout = self._timeout(timeout_s or self.timeout_s)
        # A pooled connection may have been closed by the peer while idle (e.g. the server
        # restarted); that is retried once on a new connection. A read timeout is not retried:
        # the peer may be working on it.
        for attempt in (0, 1):
            try:
                async with session.request(method, self.base + path, data=body, timeout=timeout,
                                           headers=headers) as r:
                    return Reply(r.status, await r.read(), r.headers)
            except aiohttp.ServerDisconnectedError as e:
                if attempt == 0:
                    continue
                raise HttpError(f"{method} {path} on {self.host}:{self.port} failed: {type(e).__name__} {e}") from None
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
                what = "cannot connect to" if isinstance(e, aiohttp.ClientConnectorError) else f"{method} {path} on"
                raise HttpError(f"{what} {self.host}:{self.port} failed: {type(e).__name__} {e}".rstrip()) from None
        raise AssertionError("unreachable")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
