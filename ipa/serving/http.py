"""A small HTTP/1.1 server and keep-alive client on asyncio streams.

Why not a framework: none is installed here (no aiohttp, uvicorn, starlette), and what the
servers need is narrow: JSON bodies with Content-Length (or chunked uploads), keep-alive, a
handful of routes. This stays dependency-free and adds well under a millisecond per hop.
"""
from __future__ import annotations

import asyncio
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable
from urllib.parse import parse_qs, urlsplit

MAX_BODY = 64 * 1024 * 1024
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 411: "Length Required",
           413: "Payload Too Large", 500: "Internal Server Error", 502: "Bad Gateway",
           503: "Service Unavailable", 504: "Gateway Timeout"}


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Request], Awaitable[Response]]


class BadRequest(Exception):
    """The bytes on the wire are not an HTTP request we can read."""


async def _read_head(reader: asyncio.StreamReader) -> tuple[str, str, str, dict[str, str]] | None:
    line = await reader.readline()
    if not line:
        return None
    try:
        method, target, version = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
    except ValueError:
        raise BadRequest(f"malformed request line {line[:80]!r}") from None
    headers = await _read_headers(reader)
    return method, target, version, headers


async def _read_headers(reader: asyncio.StreamReader) -> dict[str, str]:
    headers: dict[str, str] = {}
    while True:
        h = await reader.readline()
        if h in (b"\r\n", b"\n"):
            return headers
        if not h:
            raise asyncio.IncompleteReadError(b"", None)
        name, sep, value = h.decode("latin-1").partition(":")
        if not sep:
            raise BadRequest(f"malformed header line {h[:80]!r}")
        headers[name.strip().lower()] = value.strip()


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if headers.get("transfer-encoding", "").lower() == "chunked":
        parts, total = [], 0
        while True:
            size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                await _read_headers(reader)  # trailers
                return b"".join(parts)
            total += size
            if total > MAX_BODY:
                raise BadRequest("body too large")
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
    n = int(headers.get("content-length") or 0)
    if n < 0 or n > MAX_BODY:
        raise BadRequest(f"content-length {n} out of range")
    return await reader.readexactly(n) if n else b""


def _head(status: int, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def serve(handler: Handler, host: str, port: int) -> asyncio.base_events.Server:
    """Start serving ``handler`` on host:port (keep-alive, one request at a time per connection)."""

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await _read_head(reader)
                    if head is None:
                        return
                    method, target, version, headers = head
                    body = await _read_body(reader, headers)
                except BadRequest as e:
                    writer.write(_head(400, {"Content-Length": str(len(str(e))), "Connection": "close"})
                                 + str(e).encode())
                    return
                url = urlsplit(target)
                request = Request(method.upper(), url.path, parse_qs(url.query), headers, body)
                try:
                    response = await handler(request)
                except Exception as e:  # a handler bug must not kill the connection loop silently
                    msg = f'{{"error": "internal error: {type(e).__name__}"}}'.encode()
                    response = Response(500, msg)
                conn = headers.get("connection", "").lower()
                keep = conn != "close" if version == "HTTP/1.1" else conn == "keep-alive"
                out = {"Content-Type": response.content_type, "Content-Length": str(len(response.body)),
                       **response.headers}
                if not keep:
                    out["Connection"] = "close"
                writer.write(_head(response.status, out) + (response.body if method != "HEAD" else b""))
                await writer.drain()
                if not keep:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            return
        finally:
            writer.close()

    return await asyncio.start_server(on_connection, host, port, reuse_address=True, backlog=1024)


def log(msg: str) -> None:
    """A server process's log line (stderr, which its parent sends to the process's log file)."""
    print(f"{time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


async def serve_until_signalled(handler: Handler, host: str, port: int, banner: str,
                                before_close: Callable[[], Awaitable[None]] | None = None) -> None:
    """Serve ``handler`` on host:port until SIGTERM or SIGINT, then close the listening socket.
    ``before_close`` runs after the signal while the server still answers (a stage's drain).
    ``banner`` is logged once the socket listens: the line a process's parent may wait for."""
    srv = await serve(handler, host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log(banner)
    await stop.wait()
    if before_close is not None:
        await before_close()
    srv.close()


class HttpError(Exception):
    """The peer could not be reached or broke the connection: the request's outcome is unknown."""


class Client:
    """Keep-alive connections to one host:port, one request at a time per connection."""

    def __init__(self, host: str, port: int, timeout_s: float = 60.0):
        self.host, self.port, self.timeout_s = host, port, timeout_s
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def request(self, method: str, path: str, body: bytes = b"",
                      timeout_s: float | None = None) -> tuple[int, bytes]:
        # A pooled connection may have been closed by the peer while idle (e.g. the server
        # restarted); such a failure before any response byte is retried once on a new one.
        for attempt in (0, 1):
            reused = bool(self._idle) and attempt == 0
            try:
                conn = self._idle.pop() if reused else await asyncio.wait_for(
                    asyncio.open_connection(self.host, self.port), timeout=5.0)
            except (OSError, asyncio.TimeoutError) as e:
                raise HttpError(f"cannot connect to {self.host}:{self.port}: {e or type(e).__name__}") from None
            reader, writer = conn
            got_bytes = False
            try:
                head = (f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode("latin-1")
                writer.write(head + body)
                status_line = await asyncio.wait_for(reader.readline(), timeout_s or self.timeout_s)
                if not status_line:
                    raise ConnectionResetError("connection closed before a response")
                got_bytes = True
                status = int(status_line.split(b" ", 2)[1])
                headers = await _read_headers(reader)
                data = await _read_body(reader, headers)
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError, IndexError,
                    BadRequest) as e:
                writer.close()
                if reused and not got_bytes and not isinstance(e, asyncio.TimeoutError):
                    continue
                raise HttpError(f"{method} {path} on {self.host}:{self.port} failed: "
                                f"{type(e).__name__} {e}".rstrip()) from None
            if headers.get("connection", "").lower() == "close":
                writer.close()
            else:
                self._idle.append(conn)
            return status, data
        raise AssertionError("unreachable")

    def close(self) -> None:
        for _, writer in self._idle:
            writer.close()
        self._idle.clear()
