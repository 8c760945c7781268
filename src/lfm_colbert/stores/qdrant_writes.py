"""Writing to a QdrantStore: add / upsert / delete, uploaded in bounded batches with retries."""

from __future__ import annotations

import contextlib
import time
import uuid
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from lfm_colbert.errors import InputError, LfmColbertError
from lfm_colbert.stores import filters
from lfm_colbert.stores.qdrant_points import PAGE, StoreError, clean_metadata, dense_vector, one_line, point_id
from lfm_colbert.tokenization import check_texts


class StoreWrites:
    """QdrantStore's writes (a mixin over the store's backend `self._b` and settings)."""

    _b: Any
    _bulk = False
    _dirty = False

    def add(
        self,
        documents: Sequence[str],
        ids: Sequence[str] | None = None,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
        *,
        parents: Sequence[str | None] | None = None,
        upsert: bool = False,
        batch_size: int = 32,
        show_progress: bool | None = None,
        progress_bar: Any = None,
    ) -> list[str]:
        """Encode and add documents; returns their ids. Same rules as `Index.add`: an existing id is an
        error unless `upsert`, which replaces it (and every passage of a `parents` id). Uploaded in
        bounded batches as they are encoded; see `_write` for what a failure leaves."""
        if isinstance(documents, str):
            raise InputError("add() takes a list of documents, not one string")
        docs = check_texts(list(documents)) if documents else []
        from lfm_colbert.encoder import stream_documents

        model = self.model
        return self._write(stream_documents(model, docs, batch_size, progress_bar, show_progress), len(docs), ids, docs,
                           metadata, parents, upsert)

    def add_vectors(
        self,
        vectors: Sequence[np.ndarray],
        ids: Sequence[str] | None = None,
        texts: Sequence[str | None] | None = None,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
        *,
        parents: Sequence[str | None] | None = None,
        upsert: bool = False,
    ) -> list[str]:
        """Add precomputed document vectors, each (T_i, dim); same rules as `add`."""
        vectors = list(vectors)
        return self._write(iter(vectors), len(vectors), ids, texts, metadata, parents, upsert)

    def upsert(self, documents: Sequence[str], ids: Sequence[str], metadata: Any = None, **kw: Any) -> list[str]:
        """Add documents, replacing any with the same ids."""
        return self.add(documents, ids, metadata, upsert=True, **kw)

    def _write(self, vectors: Iterator[np.ndarray], n: int, ids: Any, texts: Any, metadata: Any, parents: Any,
               upsert: bool) -> list[str]:
        """Upload documents in batches of at most `upload_points` points and `upload_bytes` bytes.

        Each batch is retried on transient errors. A batch that still fails raises a StoreError that
        names it; the batches before it stay stored (Qdrant has no multi-request transaction), so
        adding the same documents again with upsert completes the write.
        """
        ids = [uuid.uuid4().hex for _ in range(n)] if ids is None else list(ids)
        texts = [None] * n if texts is None else list(texts)
        metadata = [None] * n if metadata is None else list(metadata)
        parents = [None] * n if parents is None else list(parents)
        for name, seq in (("ids", ids), ("texts", texts), ("metadata", metadata), ("parents", parents)):
            if len(seq) != n:
                raise InputError(f"got {n} documents but {len(seq)} {name}")
        for i in ids:
            if not isinstance(i, str) or not i:
                raise InputError(f"document ids must be non-empty strings, not {i!r}")
        if len(set(ids)) != n:
            dup = next(i for i in ids if ids.count(i) > 1)
            raise InputError(f"id {dup!r} appears more than once in this call")
        metadata = [clean_metadata(m, i) for m, i in zip(metadata, ids)]
        if n == 0:
            return []
        pids = [point_id(i) for i in ids]
        if not upsert:
            have = self._present(pids)
            if have:
                shown = ", ".join(sorted(ids[j] for j, p in enumerate(pids) if p in have)[:5])
                raise InputError(f"{len(have)} id(s) already in the store ({shown}); use upsert to replace them")
        new = set(pids)
        stale = [p for p in self._passages_of(sorted({p for p in parents if p})) if p not in new] if upsert else []
        dim = self.manifest["dim"]
        per_value = 4 if (self.spec.grpc or not self._b.remote) else 16  # bytes per number sent
        batch: list[Any] = []
        size = 0
        done = [0, 0]  # batches, documents stored
        count = 0
        for j, vec in enumerate(vectors):
            vec = np.asarray(vec)
            if vec.ndim != 2 or vec.shape[1] != dim or len(vec) == 0:
                raise InputError(f"vectors of {ids[j]!r} must be a non-empty (tokens, {dim}) array, not {vec.shape}")
            tokens = vec.astype(np.float16)  # what the embedded index stores, and the collection's datatype
            payload = {"id": ids[j], "text": texts[j], "parent": parents[j], "metadata": metadata[j],
                       "n_tokens": int(len(vec)), filters.FILTER_FIELD: filters.filter_payload(metadata[j])}
            batch.append((pids[j], tokens, dense_vector(tokens) if self.dense else None, payload))
            size += tokens.size * per_value + len(texts[j] or "") * 2 + 256
            count += 1
            if len(batch) >= self.upload_points or size >= self.upload_bytes:
                self._upload(batch, done)
                batch, size = [], 0
        if count != n:
            raise InputError(f"got {n} ids but {count} vector arrays")
        if batch:
            self._upload(batch, done)
        for s in range(0, len(stale), 1000):  # passages the new version of a document no longer has
            self._retrying(lambda part=stale[s : s + 1000]: self._b.delete(part), f"deleting {len(stale)} replaced passages")
        self._after_write()
        return ids

    def _retrying(self, call: Any, what: str) -> None:
        for attempt in range(1, self.retries + 1):
            try:
                call()
                return
            except LfmColbertError:
                raise
            except Exception as exc:
                if attempt < self.retries and self._b.is_transient(exc):
                    time.sleep(0.5 * 2 ** (attempt - 1))
                    continue
                tries = f" after {attempt} tries" if attempt > 1 else ""
                raise StoreError(f"{what} in {self.spec} failed{tries}: {one_line(exc)}") from exc

    def _upload(self, batch: list[Any], done: list[int]) -> None:
        first, last = batch[0][3]["id"], batch[-1][3]["id"]
        what = (f"upload batch {done[0] + 1} (documents {done[1] + 1}-{done[1] + len(batch)} of this call, "
                f"{first!r} to {last!r})")
        try:
            self._retrying(lambda: self._b.upsert(batch), what)
        except StoreError as exc:
            kept = (f"the {done[1]} documents of batches 1-{done[0]} are stored and stay" if done[0]
                    else "nothing of this call was stored")
            raise StoreError(f"{exc}; {kept}; add the same documents again with upsert to complete it") from exc.__cause__
        done[0] += 1
        done[1] += len(batch)
        self._dirty = True

    def _after_write(self) -> None:
        with self._guard("flushing"):
            self._b.flush()
            if not self._bulk:
                self._optimize()

    def _optimize(self) -> None:
        if self._dirty:
            self._b.optimize()
            self._dirty = False

    @contextlib.contextmanager
    def bulk(self) -> Iterator[Any]:
        """Several adds as one load: Qdrant Edge optimizes its segments once, at the end."""
        self._bulk = True
        try:
            yield self
        finally:
            self._bulk = False
        with self._guard("optimizing"):
            self._optimize()

    def delete(self, ids: Sequence[str] | str, missing_ok: bool = False) -> int:
        """Delete documents by id (a parent id deletes all its passages); returns how many were removed.
        Unknown ids are an error (and nothing is deleted) unless `missing_ok`."""
        ids = [ids] if isinstance(ids, str) else list(ids)
        if not ids:
            raise InputError("no ids to delete")
        present = self._present([point_id(i) for i in ids])
        targets = set(present)
        found_parents = set()
        for s in range(0, len(ids), PAGE):
            part = ids[s : s + PAGE]
            for pid, payload, _ in self._scan(self._b.conditions.all_of([self._b.conditions.keyword_any("parent", part)]),
                                              fields=["parent"]):
                targets.add(pid)
                found_parents.add(payload.get("parent"))
        unknown = [i for i in ids if point_id(i) not in present and i not in found_parents]
        if unknown and not missing_ok:
            shown = ", ".join(repr(u) for u in unknown[:5])
            raise InputError(f"{len(unknown)} id(s) not in the store: {shown}; nothing was deleted")
        targets_list = sorted(targets)
        for s in range(0, len(targets_list), 1000):
            self._retrying(lambda part=targets_list[s : s + 1000]: self._b.delete(part), f"deleting {len(targets_list)} documents")
        self._dirty = bool(targets_list) or self._dirty
        self._after_write()
        return len(targets_list)
