"""`create_app`: the FastAPI application, for `lfm-colbert serve`, tests and any other ASGI host.

    >>> from lfm_colbert.server import create_app
    >>> app = create_app("my-index")                      # uvicorn.run(app, host="127.0.0.1", port=8000)
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any, AsyncIterator

from anyio import to_thread
from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from lfm_colbert import __version__
from lfm_colbert.server import errors
from lfm_colbert.server.engine import Engine
from lfm_colbert.server.routes import api, open_routes
from lfm_colbert.server.security import Admission, BodyLimit
from lfm_colbert.server.settings import Batching, Limits

logger = logging.getLogger("lfm_colbert.server")
STATIC = Path(__file__).parent / "static"
# The demo page loads only its own files; no inline script, no third-party origin.
_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
# `lfm-colbert serve --workers N` hands each worker process its settings through this variable.
CONFIG_ENV = "LFM_COLBERT_SERVE_CONFIG"

DESCRIPTION = """\
Multilingual late-interaction search with LiquidAI's LFM2 / LFM2.5 ColBERT retrievers.

Every endpoint but `/health` and the demo page needs `Authorization: Bearer <key>` when the server
was started with an API key. Errors are JSON: `{"error": code, "detail": message}`.
"""


def create_app(
    index: str | os.PathLike | None = None,
    model: Any = None,
    *,
    api_key: str | None = None,
    read_only: bool = False,
    limits: Limits | None = None,
    batching: Batching | None = None,
    backend: str = "auto",
    device: str | None = None,
) -> FastAPI:
    """The search service over `index` (a directory; created empty when missing unless `read_only`;
    None serves /rerank and /encode only) with `model` (a loaded ColBERT, a hub id or local path, or
    None for the index's own model). The model loads in the background once the app starts:
    /health answers 503 until it is ready."""
    limits = limits or Limits()
    engine = Engine(index, model, read_only=read_only, batching=batching, backend=backend, device=device,
                    retry_after_s=limits.retry_after_s)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine.start()
        try:
            yield
        finally:
            # Uvicorn gets here on SIGTERM once in-flight requests are answered: finish accepted writes.
            await to_thread.run_sync(engine.close)

    app = FastAPI(title="lfm-colbert", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    app.state.engine = engine
    app.state.limits = limits
    app.state.api_key = api_key.encode() if api_key else None
    app.state.read_only = read_only
    app.state.admission = Admission(limits)
    errors.install(app)
    app.include_router(open_routes)
    app.include_router(api)
    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes)

    @app.get("/", include_in_schema=False)
    async def demo() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Content-Security-Policy": _CSP, "Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def app_from_env() -> FastAPI:
    """The app described by $LFM_COLBERT_SERVE_CONFIG (JSON): how `serve --workers N` builds one per process."""
    raw = os.environ.get(CONFIG_ENV)
    if not raw:
        raise RuntimeError(f"{CONFIG_ENV} is not set; start the server with `lfm-colbert serve`")
    cfg = json.loads(raw)
    return create_app(
        cfg.get("index"), cfg.get("model"), api_key=os.environ.get("LFM_COLBERT_API_KEY") or None,
        read_only=bool(cfg.get("read_only")), limits=Limits(**cfg.get("limits", {})),
        batching=Batching(**cfg.get("batching", {})), backend=cfg.get("backend", "auto"), device=cfg.get("device"),
    )
