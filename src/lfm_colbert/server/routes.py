"""The HTTP endpoints: thin translations between the JSON contract (schemas) and the Engine."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from lfm_colbert import __version__
from lfm_colbert.explain import Explanation
from lfm_colbert.server import schemas as S
from lfm_colbert.server.engine import Engine
from lfm_colbert.server.errors import ApiError
from lfm_colbert.server.security import admit, authorize, check_k, check_texts, limits_of, writable
from lfm_colbert.server.settings import Limits

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": S.ErrorResponse, "description": text}
    for status, text in [(400, "the body is not JSON"), (401, "missing or wrong API key"),
                         (413, "body, texts per request or a text too large"), (422, "invalid fields or values"),
                         (429, "too many concurrent requests from this client (Retry-After)"),
                         (503, "loading, busy or shutting down (Retry-After)")]
}
_API = [Depends(authorize), Depends(admit)]


def engine_of(request: Request) -> Engine:
    return request.app.state.engine


def _explanation(e: Explanation | None) -> S.ExplanationOut | None:
    return None if e is None else S.ExplanationOut.model_validate(e.to_dict())


api = APIRouter(dependencies=_API, responses=_ERRORS)


@api.post("/search", response_model=S.SearchResponse, response_model_exclude_none=False, tags=["search"])
async def search(body: S.SearchRequest, engine: Engine = Depends(engine_of), limits: Limits = Depends(limits_of)) -> Any:
    """Top-k documents for `query` (hits), or for each of `queries` (one list of hits per query)."""
    texts = body.texts
    check_texts(texts, limits, "queries")
    check_k(body.k, limits)
    results = await engine.search(texts, body.k, body.filter, body.explain, body.mode, body.alpha)
    per_query = [[S.HitOut(id=h.id, score=h.score, text=h.text, metadata=h.metadata, explanation=_explanation(e))
                  for h, e in hits] for hits in results]
    return S.SearchResponse(hits=per_query[0] if body.query is not None else per_query)


@api.post("/rerank", response_model=S.RerankResponse, tags=["search"])
async def rerank(body: S.RerankRequest, engine: Engine = Depends(engine_of), limits: Limits = Depends(limits_of)) -> Any:
    """Order `documents` by MaxSim against `query`, best first; no index needed."""
    check_texts([body.query], limits, "query")
    check_texts(body.documents, limits, "documents")
    check_k(body.k, limits)
    ranked = await engine.rerank(body.query, body.documents, body.k, body.explain)
    return S.RerankResponse(results=[S.RankedOut(index=r.index, score=r.score, text=r.text, explanation=_explanation(e))
                                     for r, e in ranked])


@api.post("/encode", response_model=S.EncodeResponse, tags=["search"])
async def encode(body: S.EncodeRequest, engine: Engine = Depends(engine_of), limits: Limits = Depends(limits_of)) -> Any:
    """Token vectors (L2-normalised, one row per token) for queries or documents, as `ColBERT.encode`
    returns them, for clients that store vectors elsewhere."""
    check_texts(body.texts, limits, "texts")
    vectors = await engine.encode(body.texts, body.is_query)
    if body.format == "base64":
        out: list[Any] = [base64.b64encode(np.ascontiguousarray(v, dtype="<f4").tobytes()).decode() for v in vectors]
    else:
        out = [v.tolist() for v in vectors]
    # Returned directly: validating thousands of floats through the response model costs more than encoding them.
    return JSONResponse({"dim": int(vectors[0].shape[1]), "shapes": [list(v.shape) for v in vectors], "vectors": out})


@api.post("/documents", response_model=S.AddResponse, tags=["documents"], dependencies=[Depends(writable)],
          responses={403: {"model": S.ErrorResponse, "description": "read-only server"},
                     409: {"model": S.ErrorResponse, "description": "an id exists (use upsert)"}})
async def add_documents(body: S.AddRequest, engine: Engine = Depends(engine_of), limits: Limits = Depends(limits_of)) -> Any:
    """Add documents (or replace them with `upsert`); answered once the write is committed."""
    docs = body.documents
    check_texts([d.text for d in docs], limits, "documents")
    ids, truncated = await engine.add([d.text for d in docs], [d.id for d in docs], [d.metadata for d in docs], body.upsert)
    return S.AddResponse(ids=ids, truncated=truncated)


@api.delete("/documents", response_model=S.DeleteResponse, tags=["documents"], dependencies=[Depends(writable)],
            responses={403: {"model": S.ErrorResponse, "description": "read-only server"},
                       404: {"model": S.ErrorResponse, "description": "an id is not in the index"}})
async def delete_documents(body: S.DeleteRequest, engine: Engine = Depends(engine_of), limits: Limits = Depends(limits_of)) -> Any:
    """Delete documents by id (a source document's id deletes all its passages)."""
    check_texts(body.ids, limits, "ids")
    return S.DeleteResponse(deleted=await engine.delete(list(body.ids), body.missing_ok))


@api.get("/documents", response_model=S.DocumentsResponse, tags=["documents"])
async def list_documents(
    ids: list[str] | None = Query(None, alias="id", description="ids to fetch (repeat the parameter); null for each unknown one"),
    limit: int = Query(100, ge=1, description="without ids: a page of documents in id order"),
    after: str | None = Query(None, description="without ids: the last id of the previous page"),
    filter: str | None = Query(None, description='without ids: a JSON object as in /search, e.g. {"lang": "en"}'),
    engine: Engine = Depends(engine_of),
    limits: Limits = Depends(limits_of),
) -> Any:
    """Several documents by id (`?id=a&id=b`), or a page of all of them (or of those matching
    `filter`) in id order: pass the last id of a page as `after` for the next."""
    if ids:
        check_texts(ids, limits, "ids")
        docs: list[Any] = await engine.get(ids)
    else:
        check_k(limit, limits, "limit")
        docs = await engine.list(limit, after, _parse_filter(filter))
    return S.DocumentsResponse(documents=[None if d is None else S.DocumentOut(**d.to_dict()) for d in docs])


def _parse_filter(raw: str | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"filter is not valid JSON: {exc}", "invalid_json") from None
    if not isinstance(value, dict):
        raise ApiError(422, 'filter must be a JSON object such as {"lang": "en"}', "invalid_request")
    try:
        S.check_finite(value, "filter")
    except ValueError as exc:
        raise ApiError(422, str(exc), "invalid_request") from None
    return value


@api.get("/documents/{doc_id:path}", response_model=S.DocumentOut, tags=["documents"],
         responses={404: {"model": S.ErrorResponse, "description": "no document with this id"}})
async def get_document(doc_id: str, engine: Engine = Depends(engine_of)) -> Any:
    """One stored document: its text, metadata and parent (the source it is a passage of)."""
    [doc] = await engine.get([doc_id])
    if doc is None:
        raise ApiError(404, f"no document with id {doc_id!r}", "not_found")
    return S.DocumentOut(**doc.to_dict())


@api.get("/info", response_model=S.InfoResponse, tags=["service"])
async def info(request: Request, engine: Engine = Depends(engine_of), limits: Limits = Depends(limits_of)) -> Any:
    """The model and index description, document counts, and this server's limits."""
    index, keys = await engine.describe()
    return S.InfoResponse(version=__version__, model=engine.model_description, index=index, metadata_keys=keys,
                          read_only=engine.read_only, limits=limits.to_dict(), batching=engine.batching.to_dict())


open_routes = APIRouter()


@open_routes.get("/health", response_model=S.HealthResponse, tags=["service"],
                 responses={503: {"model": S.HealthResponse, "description": "alive, not ready"}})
async def health(request: Request, engine: Engine = Depends(engine_of)) -> Any:
    """Liveness (any answer) and readiness (200 once the model is loaded; 503 while loading or
    draining). Needs no API key."""
    state = engine.state
    body = S.HealthResponse(status=state, ready=state == "ready", error=engine.error,
                            auth_required=request.app.state.api_key is not None, read_only=engine.read_only,
                            has_index=engine.index_path is not None, version=__version__)
    return JSONResponse(body.model_dump(), status_code=200 if state == "ready" else 503)
