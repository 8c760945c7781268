"""Reading a QdrantStore back: by id, in pages, all of it, its vectors, what is unchanged."""

from __future__ import annotations

from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from lfm_colbert.errors import InputError
from lfm_colbert.index import Document
from lfm_colbert.index.writer import unchanged_of
from lfm_colbert.stores import filters
from lfm_colbert.stores.qdrant_points import PAGE, clean_metadata, document, point_id


class StoreReads:
    """QdrantStore's reads (a mixin: `self._b` is the backend, `self._guard` wraps its errors)."""

    _b: Any

    def _present(self, pids: Sequence[str]) -> set[str]:
        out: set[str] = set()
        with self._guard("reading"):
            for s in range(0, len(pids), PAGE):
                out.update(r[0] for r in self._b.retrieve(pids[s : s + PAGE]))
        return out

    def _scan(self, flt: Any = None, fields: Sequence[str] | None = None, vectors: bool = False) -> Iterator[Any]:
        offset = None
        while True:
            with self._guard("reading"):
                records, offset = self._b.scroll(flt, offset, PAGE, vectors=vectors, fields=fields)
            yield from records
            if offset is None:
                return

    def _passages_of(self, parents: Sequence[str]) -> list[str]:
        out: list[str] = []
        c = self._b.conditions
        for s in range(0, len(parents), PAGE):
            out += [r[0] for r in self._scan(c.all_of([c.keyword_any("parent", parents[s : s + PAGE])]), fields=["parent"])]
        return out

    def _documents(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """{id: payload} of those of `ids` that exist."""
        out = {}
        with self._guard("reading"):
            for s in range(0, len(ids), PAGE):
                for _, payload, _ in self._b.retrieve([point_id(i) for i in ids[s : s + PAGE]]):
                    out[payload["id"]] = payload
        return out

    def get(self, ids: str | Sequence[str]) -> Document | None | list[Document | None]:
        """The stored document with this id (None if there is none), or a list for a list of ids."""
        single = isinstance(ids, str)
        wanted = [ids] if single else list(ids)
        for i in wanted:
            if not isinstance(i, str):
                raise InputError(f"document ids are strings, not {type(i).__name__}")
        found = self._documents(wanted)
        docs = [document(found[i]) if i in found else None for i in wanted]
        return docs[0] if single else docs

    def list(self, filter: Mapping[str, Any] | None = None, limit: int | None = None, after: str | None = None) -> list[Document]:
        """Documents matching `filter`, at most `limit`, in point-id order (stable, not alphabetical),
        starting after id `after` (pass the last id of one page to get the next)."""
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise InputError(f"limit must be a positive integer, not {limit!r}")
        flt = filters.translate(filter, self._b.conditions)
        offset = point_id(after) if after is not None else None
        out: list[Document] = []
        while limit is None or len(out) < limit:
            with self._guard("reading"):
                records, nxt = self._b.scroll(flt, offset, PAGE + 1)
            for pid, payload, _ in records:
                if after is not None and pid == offset:
                    continue  # a scroll offset is inclusive
                out.append(document(payload))
            if nxt is None:
                break
            offset, after = nxt, None
        return out if limit is None else out[:limit]

    def __iter__(self) -> Iterator[Document]:
        for _, payload, _ in self._scan():
            yield document(payload)

    def __len__(self) -> int:
        with self._guard("counting"):
            return self._b.count()

    def __contains__(self, doc_id: object) -> bool:
        return isinstance(doc_id, str) and bool(self._present([point_id(doc_id)]))

    def vectors(self, ids: Sequence[str]) -> list[np.ndarray]:
        """The stored token vectors of documents `ids`, each (T_i, dim) float32 (float16 precision)."""
        wanted = [ids] if isinstance(ids, str) else list(ids)
        got: dict[str, np.ndarray] = {}
        with self._guard("reading"):
            for s in range(0, len(wanted), PAGE):
                for _, payload, tokens in self._b.retrieve([point_id(i) for i in wanted[s : s + PAGE]], vectors=True):
                    got[payload["id"]] = tokens
        missing = [i for i in wanted if i not in got]
        if missing:
            raise InputError(f"{len(missing)} id(s) not in the store: {', '.join(map(repr, missing[:5]))}")
        return [got[i] for i in wanted]

    def metadata_keys(self) -> dict[str, int]:
        """{metadata key: number of documents that have it} (reads every point's key list: O(documents))."""
        counts: dict[str, int] = {}
        for _, payload, _ in self._scan(fields=[filters.FILTER_FIELD + ".keys"]):
            for key in (payload.get(filters.FILTER_FIELD) or {}).get("keys", []):
                counts[key] = counts.get(key, 0) + 1
        return dict(sorted(counts.items()))

    def unchanged(self, ids: Sequence[str], texts: Sequence[str | None], metadata: Sequence[Any] | None = None,
                  parents: Sequence[str | None] | None = None) -> set[str]:
        """The ids already stored with this very text, metadata and parent (as `Index.unchanged`)."""
        n = len(ids)
        metadata = [None] * n if metadata is None else list(metadata)
        parents = [None] * n if parents is None else list(parents)
        stored = {i: (p.get("parent"), p.get("text"), p.get("metadata") or {}) for i, p in self._documents(list(ids)).items()}
        c = self._b.conditions
        wanted_parents = sorted({p for p in parents if p})
        for s in range(0, len(wanted_parents), PAGE):
            for _, p, _ in self._scan(c.all_of([c.keyword_any("parent", wanted_parents[s : s + PAGE])])):
                stored[p["id"]] = (p.get("parent"), p.get("text"), p.get("metadata") or {})
        return unchanged_of(stored, ids, texts, [clean_metadata(m, i) for i, m in zip(ids, metadata)], parents)
