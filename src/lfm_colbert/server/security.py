"""Auth and limits: FastAPI dependencies for the API key, admission (concurrent requests) and size
bounds, plus the one ASGI middleware that must act before a body is read (its size)."""

from __future__ import annotations

import json
import secrets
from collections import Counter
from typing import Any, AsyncIterator, Sequence

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from lfm_colbert.server.errors import ApiError, retry_later
from lfm_colbert.server.settings import Limits

_bearer = HTTPBearer(auto_error=False, description="the server's API key (required when it set one)")


def limits_of(request: Request) -> Limits:
    return request.app.state.limits


async def authorize(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> None:
    """Require `Authorization: Bearer <key>` when the server has a key; compared in constant time."""
    key: bytes | None = request.app.state.api_key
    if key is None:
        return
    given = credentials.credentials.encode() if credentials is not None else b""
    if not secrets.compare_digest(given, key):  # constant time, whatever the lengths
        detail = "this server needs an API key: send 'Authorization: Bearer <key>'" if credentials is None else "wrong API key"
        raise ApiError(401, detail, "unauthorized", {"WWW-Authenticate": "Bearer"})


class Admission:
    """Bounds the requests inside the server: all together (beyond: 503) and per client address
    (beyond: 429), both with Retry-After. Runs on the event loop only, so plain counters suffice."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.total = 0
        self.per_client: Counter[str] = Counter()

    def enter(self, request: Request) -> str:
        """Count a request in, or raise 503 / 429; returns the client key to pass to `leave`."""
        lim = self.limits
        client = request.client.host if request.client else "unknown"
        if self.total >= lim.max_concurrent:
            raise retry_later(503, f"the server is busy ({self.total} requests in progress); retry shortly",
                              "overloaded", lim.retry_after_s)
        if lim.max_per_client and self.per_client[client] >= lim.max_per_client:
            raise retry_later(429, f"too many concurrent requests from {client} (at most {lim.max_per_client})",
                              "too_many_requests", lim.retry_after_s)
        self.total += 1
        self.per_client[client] += 1
        return client

    def leave(self, client: str) -> None:
        self.total -= 1
        self.per_client[client] -= 1
        if self.per_client[client] <= 0:
            del self.per_client[client]


async def admit(request: Request) -> AsyncIterator[None]:
    """Dependency: hold one admission slot for the duration of the request."""
    admission: Admission = request.app.state.admission
    client = admission.enter(request)
    try:
        yield
    finally:
        admission.leave(client)


async def writable(request: Request) -> None:
    if request.app.state.read_only:
        raise ApiError(403, "this server is read-only (--read-only): it accepts no writes", "read_only")


def check_texts(texts: Sequence[str], limits: Limits, what: str) -> None:
    """413 for too many texts in one request, or one that is too long."""
    if len(texts) > limits.max_texts:
        raise ApiError(413, f"{len(texts)} {what} in one request; this server takes at most {limits.max_texts}",
                       "too_many_texts")
    for i, text in enumerate(texts):
        if len(text) > limits.max_text_chars:
            raise ApiError(413, f"{what}[{i}] has {len(text)} characters; this server takes at most "
                                f"{limits.max_text_chars} per text", "text_too_long")


def check_k(k: int | None, limits: Limits, name: str = "k") -> None:
    if k is not None and k > limits.max_k:
        raise ApiError(422, f"{name} is {k}; this server returns at most {limits.max_k} results", "invalid_request")


class BodyLimit:
    """ASGI middleware: a request body over `max_bytes` is answered 413 without being read whole,
    whether it announces its length or streams (chunked). (FastAPI >= 0.164 has `max_body_size`,
    but answers in plain text where a route does not read the body; this answers JSON everywhere.)"""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and not length.isdigit():
            return await _send_json(send, 400, "bad_request", f"bad Content-Length header {length[:40]!r}")
        if length is not None and int(length) > self.max_bytes:
            return await _send_json(send, 413, "too_large", f"request body of {int(length):,} bytes; this "
                                                            f"server takes at most {self.max_bytes:,}")
        seen = 0
        started = False

        async def counted_receive() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge(self.max_bytes)
            return message

        async def tracked_send(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except _TooLarge as exc:  # raised outside the app's exception handlers
            if not started:
                await _send_json(send, 413, "too_large", exc.detail)


async def _send_json(send: Any, status: int, code: str, detail: str) -> None:
    body = json.dumps({"error": code, "detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class _TooLarge(StarletteHTTPException):
    """Raised while the body streams in; FastAPI passes HTTP exceptions through to the JSON handler."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"request body over {max_bytes:,} bytes, the most this server takes")
