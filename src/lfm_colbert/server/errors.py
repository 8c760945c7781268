"""Every failure becomes a JSON body `{"error": code, "detail": message}` with the right status;
nothing answers with a stack trace."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from lfm_colbert.errors import IndexFormatError, LfmColbertError

logger = logging.getLogger("lfm_colbert.server")

_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
          409: "conflict", 413: "too_large", 415: "unsupported_media_type", 422: "invalid_request",
          429: "too_many_requests", 500: "internal_error", 503: "unavailable"}


class ApiError(Exception):
    """An answer other than success, with its status, a short code and a message for people."""

    def __init__(self, status: int, detail: str, code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers
        self.code = code or _CODES.get(status, "error")


def retry_later(status: int, detail: str, code: str, retry_after_s: int) -> ApiError:
    """A 429 or 503 that says when to come back."""
    return ApiError(status, detail, code, {"Retry-After": str(retry_after_s)})


def error_response(status: int, code: str, detail: str, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail, **extra}, status_code=status, headers=headers)


def _where(loc: tuple) -> str:
    """('body', 'documents', 0, 'text') -> 'documents.0.text'."""
    parts = [str(p) for p in (loc[1:] if loc and loc[0] in ("body", "query", "path", "header") else loc)]
    return ".".join(parts) or (str(loc[0]) if loc else "body")


def install(app: FastAPI) -> None:
    """Register the handlers that turn exceptions into JSON errors."""

    @app.exception_handler(ApiError)
    async def _api(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.detail, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if request.method in ("POST", "PUT", "PATCH", "DELETE") and media != "application/json" and any(
                tuple(e.get("loc", ())) == ("body",) for e in errors):
            return error_response(415, "unsupported_media_type",
                                  f"send a JSON body with 'Content-Type: application/json' (got {media or 'no content type'!r})")
        if any(e.get("type") == "json_invalid" for e in errors):
            e = next(e for e in errors if e.get("type") == "json_invalid")
            reason = (e.get("ctx") or {}).get("error", "")
            return error_response(400, "invalid_json", f"the body is not valid JSON{': ' + str(reason) if reason else ''}")
        shown = "; ".join(f"{_where(tuple(e.get('loc', ())))}: {e.get('msg', 'invalid')}" for e in errors[:5])
        fields = [{"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
                  for e in errors[:20]]
        return error_response(422, "invalid_request", shown + (f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""),
                              errors=fields)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no such endpoint: {request.method} {request.url.path} (see /docs)"
        return error_response(exc.status_code, _CODES.get(exc.status_code, "error"), detail, getattr(exc, "headers", None))

    @app.exception_handler(LfmColbertError)
    async def _library(request: Request, exc: LfmColbertError) -> JSONResponse:
        if isinstance(exc, IndexFormatError):
            logger.error("index error on %s %s: %s", request.method, request.url.path, exc)
            return error_response(500, "index_error", str(exc))
        return error_response(422, "invalid_request", str(exc))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", f"internal error ({type(exc).__name__}); the server log has the details")
