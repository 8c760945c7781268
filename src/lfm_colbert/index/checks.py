"""Checks of everything a caller hands the index, before anything is read or written: each bad value
is an InputError that names it, never a TypeError from deep inside, a UnicodeEncodeError from SQLite
or an OverflowError."""

from __future__ import annotations

import json
import uuid
from typing import Any, Mapping

import numpy as np

from lfm_colbert.errors import InputError

_INT64_MAX = 2**63 - 1


def check_text(value: Any, what: str) -> None:
    """Refuse a str SQLite and UTF-8 cannot hold: a lone surrogate (from a non-UTF-8 file name or
    argument, or a JSON "\\ud800")."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InputError(
                f"{what} holds a lone surrogate ({value[exc.start]!r} at {exc.start}): text that is not valid "
                "Unicode, as bytes that are not UTF-8 become") from None


def check_id(value: Any, what: str = "document id") -> str:
    if not isinstance(value, str) or not value:
        raise InputError(f"{what}s must be non-empty strings, not {value!r}"[:200])
    check_text(value, f"{what} {value!r}")
    return value


def clean_metadata(meta: Mapping[str, Any] | None, doc_id: str) -> dict[str, Any]:
    """`meta` as the catalog will store it: JSON (numpy scalars become numbers, tuples lists).

    Checked before anything is written. NaN and infinity are refused: SQLite's JSON functions
    reject them, so one such value would break every filtered search of the index.
    """
    if meta is None:
        return {}
    if not isinstance(meta, Mapping):
        raise InputError(f"metadata of {doc_id!r} must be a dict, not {type(meta).__name__}")
    try:
        text = json.dumps(dict(meta), allow_nan=False, default=_plain, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise InputError(f"metadata of {doc_id!r}: {exc} (use strings, finite numbers, booleans, lists and dicts)") from None
    check_text(text, f"metadata of {doc_id!r}")
    return json.loads(text)


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):  # numpy / pandas scalars
        return value.item()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def check_k(k: Any, name: str = "k") -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
        raise InputError(f"{name} must be a positive integer, not {k!r}")
    return int(min(int(k), _INT64_MAX))


def as_list(value: Any, name: str) -> list:
    if value is None or isinstance(value, (str, bytes, Mapping)):
        raise InputError(f"{name} must be a list, not {type(value).__name__}")
    try:
        return list(value)
    except TypeError:  # not iterable (a number, a 0-d array)
        raise InputError(f"{name} must be a list, not {type(value).__name__}") from None


def query_array(q: Any, dim: int) -> np.ndarray:
    """One query's (tokens >= 1, dim) finite vectors, as float32."""
    try:
        q = np.asarray(q, dtype=np.float32)
    except (TypeError, ValueError):
        raise InputError(f"query vectors must be (tokens, {dim}) arrays of numbers, not {type(q).__name__}") from None
    if q.ndim != 2 or q.shape[0] == 0:
        raise InputError(f"query vectors must be non-empty (tokens, dim) arrays, got shape {q.shape}")
    if q.shape[1] != dim:
        raise InputError(f"query vectors must have dimension {dim}, not {q.shape[1]}")
    if not np.isfinite(q).all():
        raise InputError("query vectors must be finite (no NaN or infinity)")
    return q


def check_rows(n: int, ids: Any, texts: Any, metadata: Any, parents: Any) -> tuple[list, list, list, list]:
    """The per-document arguments of an add as lists of n, every value checked before anything is written."""
    def as_list(name: str, seq: Any) -> list:
        if seq is None:
            return [None] * n
        if isinstance(seq, (str, bytes, Mapping)):
            raise InputError(f"{name} must be a list (one per document), not {type(seq).__name__}")
        try:
            out = list(seq)
        except TypeError:
            raise InputError(f"{name} must be a list (one per document), not {type(seq).__name__}") from None
        if len(out) != n:
            raise InputError(f"got {n} documents but {len(out)} {name}")
        return out

    ids = [uuid.uuid4().hex for _ in range(n)] if ids is None else as_list("ids", ids)
    texts, metadata, parents = as_list("texts", texts), as_list("metadata", metadata), as_list("parents", parents)
    for i in ids:
        check_id(i)
    if len(set(ids)) != n:
        dup = next(i for i in ids if ids.count(i) > 1)
        raise InputError(f"id {dup!r} appears more than once in this call")
    for i, t in zip(ids, texts):
        if t is not None and not isinstance(t, str):
            raise InputError(f"the text of {i!r} must be a string or None, not {type(t).__name__}")
        check_text(t, f"the text of {i!r}")
    for i, p in zip(ids, parents):
        if p is not None:
            check_id(p, "parent id")
    metadata = [clean_metadata(m, i) for m, i in zip(metadata, ids)]
    return ids, texts, metadata, parents


def check_vectors(v: Any, dim: int, what: str) -> np.ndarray:
    """One document's (tokens >= 1, dim) finite vectors, as float32."""
    try:
        v = np.asarray(v, dtype=np.float32)
    except (TypeError, ValueError):
        raise InputError(f"{what}: expected a (tokens, {dim}) array of numbers, got {type(v).__name__}") from None
    if v.ndim != 2 or v.shape[1] != dim or v.shape[0] == 0:
        raise InputError(f"{what}: expected a (tokens >= 1, {dim}) array, got shape {v.shape}")
    if not np.isfinite(v).all():
        raise InputError(f"{what} has non-finite values")
    return v
