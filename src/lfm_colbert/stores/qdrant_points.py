"""What every QdrantStore module shares: point ids, payloads, dense vectors, the store's error.

A point is one document: id uuid5(NAMESPACE, user id); vectors "colbert" (its tokens, float16) and
optionally "dense" (the normalised mean of its tokens); payload {"id", "text", "parent",
"metadata", "n_tokens", "_filter"} (see lfm_colbert.stores.filters for `_filter`).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from lfm_colbert.errors import InputError, LfmColbertError
from lfm_colbert.index import Document

FORMAT = "lfm-colbert-qdrant"
VERSION = 1
NAMESPACE = uuid.UUID("fb5c805a-e35c-5084-abbe-f5c2355da5fb")  # uuid5(NAMESPACE_URL, "lfm-colbert:qdrant-point-id")
UPLOAD_POINTS = 64  # points per upload request
# Request size: a 100-token document is ~268 kB as REST JSON (52 kB over gRPC), and a server refuses
# requests over 32 MB by default, so batches are also cut at this many estimated bytes.
UPLOAD_BYTES = 8 << 20
RETRIES = 3  # tries per request when the error is transient (connection, timeout, 429, 5xx)
PAGE = 256  # ids per retrieve / scroll request


class StoreError(LfmColbertError):
    """A Qdrant request failed (after retries, where retrying could help)."""


def point_id(doc_id: str) -> str:
    """The Qdrant point id of a document id: stable across runs, machines and stores."""
    return str(uuid.uuid5(NAMESPACE, doc_id))


def dense_vector(tokens: np.ndarray) -> np.ndarray:
    """A document's (or query's) dense prefetch vector: the L2-normalised mean of its token vectors."""
    v = np.asarray(tokens, dtype=np.float32).mean(axis=0)
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


def clean_metadata(meta: Mapping[str, Any] | None, doc_id: str) -> dict[str, Any]:
    """Metadata as stored: plain JSON (numpy scalars become numbers), finite numbers only."""
    if meta is None:
        return {}
    if not isinstance(meta, Mapping):
        raise InputError(f"metadata of {doc_id!r} must be a dict, not {type(meta).__name__}")

    def plain(value: Any) -> Any:
        if isinstance(value, np.generic):
            return value.item()
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")

    try:
        return json.loads(json.dumps(dict(meta), allow_nan=False, default=plain))
    except (TypeError, ValueError) as exc:
        raise InputError(f"metadata of {doc_id!r}: {exc} (use strings, finite numbers, booleans, lists and dicts)") from None


def describe(model: Any) -> dict[str, Any]:
    desc = dict(model) if isinstance(model, Mapping) else dict(model.describe())
    if not isinstance(desc.get("dim"), int) or desc["dim"] <= 0:
        raise InputError("the model description needs a positive integer 'dim'")
    return desc


def one_line(exc: BaseException) -> str:
    """An exception as one line (qdrant-client's messages carry the raw response on further lines)."""
    return f"{type(exc).__name__}: " + " ".join(str(exc).split())


def disk_bytes(path: Path) -> int:
    """Bytes a file occupies: Qdrant Edge preallocates sparse files (196 MB apparent for 1.2 MB used)."""
    st = path.stat()
    blocks = getattr(st, "st_blocks", None)  # POSIX; Windows reports the size only
    return min(st.st_size, blocks * 512) if blocks is not None else st.st_size


def document(payload: Mapping[str, Any]) -> Document:
    return Document(payload["id"], payload.get("text"), payload.get("metadata") or {}, payload.get("parent"))
