"""Writing to an index: add, upsert and delete, each one atomic commit under the writer lock."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from lfm_colbert.errors import InputError
from lfm_colbert.index import engine, maintenance, store
from lfm_colbert.index.metadata import Catalog, clean_metadata
from lfm_colbert.index.reader import Reader
from lfm_colbert.index.segments import next_segment_id, remove_orphans, write_segment


class Writer:
    """Adds and deletes for one index directory; maintenance (lfm_colbert.index.maintenance) follows."""

    def __init__(self, path: Path, catalog: Catalog, reader: Reader) -> None:
        self.path = path
        self.catalog = catalog
        self.reader = reader
        self.defer_training = False  # inside `Index.bulk()`

    def add(
        self,
        vectors: Iterator[np.ndarray],
        n: int,
        ids: Sequence[str] | None,
        texts: Sequence[str | None] | None,
        metadata: Sequence[Mapping[str, Any] | None] | None,
        parents: Sequence[str | None] | None,
        upsert: bool,
    ) -> list[str]:
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
        reader = self.reader
        dim = reader.manifest["dim"]
        with store.writer_lock(self.path):
            reader.refresh(force=True)
            known = set(reader.order)
            remove_orphans(self.path, known)
            existing = self.catalog.existing(ids)
            if existing and not upsert:
                shown = ", ".join(sorted(existing)[:5])
                raise InputError(f"{len(existing)} id(s) already in the index ({shown}); use upsert to replace them")
            replace = sorted(existing | set(self.catalog.ids_with_parent(sorted({p for p in parents if p})))) if upsert else []
            seg_id = next_segment_id(self.path, known)
            if reader.compressed and reader.codec is None and reader.manifest["version"] < 2:
                reader.manifest["version"] = store.FORMAT_VERSION  # float16 segments may follow: older readers must refuse
                store.write_manifest(self.path, reader.manifest)
            written: list[tuple[dict[str, Any], list[tuple]]] = []
            pending: list[np.ndarray] = []
            start = 0  # index of the first document in `pending`

            def flush() -> None:
                nonlocal pending, start, seg_id
                if not pending:
                    return
                rows = [
                    (ids[start + j], parents[start + j], j, len(v), texts[start + j], metadata[start + j])
                    for j, v in enumerate(pending)
                ]
                written.append((self._write_segment(seg_id, pending), rows))
                seg_id += 1
                start += len(pending)
                pending = []

            tokens = 0
            for i, v in enumerate(vectors):
                v = np.asarray(v)
                if v.ndim != 2 or v.shape[1] != dim or v.shape[0] == 0:
                    raise InputError(f"document {i} ({ids[i]!r}): expected a (tokens >= 1, {dim}) array, got {v.shape}")
                if not np.isfinite(v).all():
                    raise InputError(f"document {i} ({ids[i]!r}) has non-finite values")
                pending.append(v)
                tokens += len(v)
                if tokens >= maintenance.SEGMENT_TOKENS:
                    flush()
                    tokens = 0
            flush()
            if start != n:
                raise InputError(f"expected {n} document vectors, got {start}")
            store.pause_point("add:segments-written")
            self.catalog.commit(written, replace=replace, pause=lambda: store.pause_point("add:before-commit"))
            reader.refresh(force=True)
            store.pause_point("add:committed")
            if not self.defer_training:
                maintenance.train_when_due(self)
        maintenance.maybe_compact(self)
        if not self.defer_training:  # a bulk block warns once, at its end
            maintenance.warn_if_outgrown(self, stacklevel=4)
        return ids

    def _write_segment(self, seg_id: int, vectors: list[np.ndarray]) -> dict[str, Any]:
        """Write one segment of this add: codes once the codec exists, float16 vectors until then."""
        reader = self.reader
        doclens = np.array([len(v) for v in vectors], dtype=np.int32)
        flat = np.concatenate(vectors).astype(np.float32)  # (N_tok, D)
        if reader.compressed and reader.codec is not None:
            rescore = bool(reader.manifest["storage"].get("rescore"))
            arrays = engine.with_ivf(engine.encode(reader.codec, flat, doclens, rescore), reader.codec)
        else:
            arrays = {"vectors": flat.astype(np.float16), "doclens": doclens}
        return write_segment(self.path, seg_id, arrays, len(vectors), int(doclens.sum()))

    def end_bulk(self) -> None:
        """The end of a `bulk()` block: train the codec once, on all of it."""
        with store.writer_lock(self.path):
            self.reader.refresh(force=True)
            maintenance.train_when_due(self)
        maintenance.maybe_compact(self)
        maintenance.warn_if_outgrown(self, stacklevel=5)

    def delete(self, ids: list[str], missing_ok: bool) -> int:
        with store.writer_lock(self.path):
            targets, unknown = self.catalog.resolve(ids)
            if unknown and not missing_ok:
                shown = ", ".join(repr(u) for u in unknown[:5])
                raise InputError(f"{len(unknown)} id(s) not in the index: {shown}; nothing was deleted")
            if targets:
                self.catalog.delete(targets)
        self.reader.refresh(force=True)
        maintenance.maybe_compact(self)
        return len(targets)

    def unchanged(
        self,
        ids: Sequence[str],
        texts: Sequence[str | None],
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
        parents: Sequence[str | None] | None = None,
    ) -> set[str]:
        n = len(ids)
        metadata = [None] * n if metadata is None else list(metadata)
        parents = [None] * n if parents is None else list(parents)
        stored = self.catalog.contents(ids, {p for p in parents if p})
        same = {i for i, t, m, p in zip(ids, texts, metadata, parents) if stored.get(i) == (p, t, clean_metadata(m, i))}
        given: dict[str, set[str]] = {}
        for i, p in zip(ids, parents):
            if p:
                given.setdefault(p, set()).add(i)
        held: dict[str, set[str]] = {}
        for i, (p, _, _) in stored.items():
            if p:
                held.setdefault(p, set()).add(i)
        for p, passages in given.items():
            if passages != held.get(p) or not passages <= same:
                same -= passages
        return same
