"""The HTTP search service: `create_app(...)` builds it, `lfm-colbert serve` runs it.

    server/app.py        the FastAPI app factory and its lifespan (load, drain)
    server/schemas.py    request and response bodies (the JSON contract)
    server/routes.py     the endpoints
    server/engine.py     model + index behind the endpoints, and which thread does what
    server/batching.py   the inference thread: query micro-batching, shared scans
    server/security.py   API key, admission (concurrency), body and text limits
    server/settings.py   Limits, Batching, the bind check
    server/errors.py     every failure as a JSON error with the right status
    server/static/       the demo page (no build step)
"""

from __future__ import annotations

from lfm_colbert.server.app import create_app
from lfm_colbert.server.settings import Batching, Limits

__all__ = ["Batching", "Limits", "create_app"]
