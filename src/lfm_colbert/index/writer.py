"""Writing to an index: add, upsert and delete, each one atomic commit under the writer lock.

Every write holds the lock from its first read to the end of the maintenance that follows its
commit (lfm_colbert.index.maintenance), so another writer can never come between a commit and
its merge or compaction, and a committed write is never reported as failed.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import threading
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from lfm_colbert.errors import InputError
from lfm_colbert.index import engine, maintenance, store
from lfm_colbert.index.checks import check_id, check_rows, check_vectors
from lfm_colbert.index.metadata import Catalog
from lfm_colbert.index.reader import Reader
from lfm_colbert.index.schema import new_index_id
from lfm_colbert.index.segments import remove_segment, taken_ids, write_segment

CODEC_TMP = re.compile(r"^\.codec-tmp-[0-9a-f]{32}$")


class Writer:
    """Adds and deletes for one index directory; one at a time per directory, across threads and processes."""

    def __init__(self, path: Path, catalog: Catalog, reader: Reader) -> None:
        self.path = path
        self.catalog = catalog
        self.reader = reader
        self._bulk = threading.local()  # `Index.bulk()` blocks open in this thread

    @property
    def defer_training(self) -> bool:
        return getattr(self._bulk, "depth", 0) > 0

    def enter_bulk(self) -> None:
        self._bulk.depth = getattr(self._bulk, "depth", 0) + 1

    def exit_bulk(self) -> None:
        self._bulk.depth -= 1

    # -- the lock, and what a writer finds when it takes it -------------------------------------------
    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        with store.writer_lock(self.path):
            self._prepare()
            yield

    def _prepare(self) -> None:
        """Upgrade an index written before format 3, and remove what a writer that died left behind:
        only what the catalog records as reserved by it (pending segments, a codec being trained)."""
        manifest = store.read_manifest(self.path)
        self.catalog.generation()  # notices an upgrade another process made
        if self.catalog.version == 1:
            self.catalog.upgrade(new_index_id(), max(taken_ids(self.path) | {0}) + 1)
        if manifest.get("index_id") != self.catalog.get_meta("index_id"):  # upgraded, manifest not yet rewritten
            if manifest["storage"]["kind"] == "plaid":
                manifest["storage"].setdefault("train_tokens", 1)  # format 1 trained its codec at the first add
            manifest.update(index_id=self.catalog.get_meta("index_id"), version=store.FORMAT_VERSION)
            publish_manifest(self, manifest)
        self.catalog.index_id = manifest["index_id"]
        reserved = self.catalog.pending()
        if reserved:  # those with directories were being written when their writer died
            on_disk = taken_ids(self.path)
            self.catalog.forget_pending([sid for sid in reserved if sid in on_disk and remove_segment(self.path, sid)])
        tmp = self.catalog.get_meta("codec_pending")
        if tmp is not None:
            if CODEC_TMP.match(tmp):
                shutil.rmtree(self.path / tmp, ignore_errors=True)
                if not manifest.get("codec"):  # it died before the manifest named the codec: nothing uses it
                    shutil.rmtree(self.path / "codec", ignore_errors=True)
            self.catalog.set_meta("codec_pending", None)
        if self.catalog.get_meta("manifest") != store.canonical_manifest(manifest):
            self.catalog.set_meta("manifest", store.canonical_manifest(manifest))
        # an index made before its keyword index, or written by an older version since
        self.catalog.rebuild_lexical(pause=lambda: store.pause_point("lexical:before-commit"))

    def set_pool_factor(self, pool_factor: int) -> None:
        """The manifest's "pool_factor", set while the index holds no document (its catalog copy too)."""
        with self.locked():
            if self.catalog.counts()[0]:
                raise InputError(f"{self.path} holds documents already; the pool factor is chosen when an index is created")
            manifest = store.read_manifest(self.path)
            manifest["pool_factor"] = pool_factor
            publish_manifest(self, manifest)

    # -- add ----------------------------------------------------------------------------------------
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
        ids, texts, metadata, parents = check_rows(n, ids, texts, metadata, parents)
        if n == 0:
            return []
        manifest = self.reader.manifest
        if manifest["storage"].get("nbits") and not manifest.get("codec"):
            engine.require_codec_library()  # else the codec's training would fail after the commit
        with self.locked():
            state = self.reader.current()
            dim = state.manifest["dim"]
            existing = self.catalog.existing(ids)
            if existing and not upsert:
                shown = ", ".join(sorted(existing)[:5])
                raise InputError(f"{len(existing)} id(s) already in the index ({shown}); use upsert to replace them")
            replace = sorted(existing | set(self.catalog.ids_with_parent(sorted({p for p in parents if p})))) if upsert else []
            written: list[tuple[dict[str, Any], list[tuple]]] = []
            pending: list[np.ndarray] = []
            start = 0  # index of the first document in `pending`

            def flush() -> None:
                nonlocal pending, start
                if not pending:
                    return
                rows = [(ids[start + j], parents[start + j], j, len(v), texts[start + j], metadata[start + j])
                        for j, v in enumerate(pending)]
                written.append((self.write_segment(state, pending), rows))
                start += len(pending)
                pending = []

            with self.reserving():
                tokens = 0
                for i, v in enumerate(vectors):
                    if i >= n:
                        raise InputError(f"expected {n} document vectors, got more")
                    v = check_vectors(v, dim, f"document {i} ({ids[i]!r})")
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
            store.pause_point("add:committed")
            maintenance.after_commit(self, train=not self.defer_training)
        if not self.defer_training:  # a bulk block warns once, at its end
            maintenance.warn_if_outgrown(self, stacklevel=4)
        return ids

    @contextlib.contextmanager
    def reserving(self) -> Iterator[None]:
        """Segment ids reserved inside are this write's: if it fails before its commit names them,
        their directories go at once (a writer killed here leaves them to the next one)."""
        self._reserved: list[int] = []
        try:
            yield
        except BaseException:
            named = {r["id"] for r in self.catalog.segments()}
            mine = [s for s in self._reserved if s not in named]
            with contextlib.suppress(Exception):
                self.catalog.forget_pending([s for s in mine if remove_segment(self.path, s)])
            raise
        finally:
            self._reserved = []

    def write_segment(self, state: Any, vectors: list[np.ndarray], arrays: dict[str, np.ndarray] | None = None,
                      n_docs: int | None = None) -> dict[str, Any]:
        """Write one segment under a newly reserved id: `arrays` as given, or `vectors` as codes once
        the codec exists, float16 until then."""
        if arrays is None:
            doclens = np.array([len(v) for v in vectors], dtype=np.int32)
            flat = np.concatenate(vectors).astype(np.float32)  # (N_tok, D)
            if state.codec is not None:
                rescore = bool(state.manifest["storage"].get("rescore"))
                arrays = engine.with_ivf(engine.encode(state.codec, flat, doclens, rescore), state.codec)
            else:
                arrays = {"vectors": flat.astype(np.float16), "doclens": doclens}
            n_docs = len(vectors)
        sid = self.catalog.reserve_segment(taken_ids(self.path), self._reserved)
        self._reserved.append(sid)
        return write_segment(self.path, sid, arrays, n_docs, int(arrays["doclens"].sum()))

    def end_bulk(self) -> None:
        """The end of a `bulk()` block: train the codec once, on all of it."""
        with self.locked():
            maintenance.after_commit(self, train=True)
        maintenance.warn_if_outgrown(self, stacklevel=5)

    def compact(self) -> None:
        with self.locked():
            maintenance.compact(self)
            maintenance.purge(self)

    def rebuild_lexical(self) -> int:
        with self.locked():
            return self.catalog.rebuild_lexical(force=True, pause=lambda: store.pause_point("lexical:before-commit")) or 0

    # -- delete -------------------------------------------------------------------------------------
    def delete(self, ids: list[str], missing_ok: bool) -> int:
        for i in ids:
            check_id(i)
        with self.locked():
            targets, unknown = self.catalog.resolve(ids)
            if unknown and not missing_ok:
                shown = ", ".join(repr(u) for u in unknown[:5])
                raise InputError(f"{len(unknown)} id(s) not in the index: {shown}; nothing was deleted")
            if targets:
                self.catalog.delete(targets, pause=lambda: store.pause_point("delete:before-commit"))
                store.pause_point("delete:committed")
                maintenance.after_commit(self)
        return len(targets)

    def unchanged(
        self,
        ids: Sequence[str],
        texts: Sequence[str | None],
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
        parents: Sequence[str | None] | None = None,
    ) -> set[str]:
        ids, texts, metadata, parents = check_rows(len(ids), ids, texts, metadata, parents)
        stored = self.catalog.contents(ids, {p for p in parents if p})
        return unchanged_of(stored, ids, texts, metadata, parents)


def unchanged_of(stored: Mapping[str, tuple], ids: Sequence[str], texts: Sequence[Any], metadata: Sequence[Any],
                 parents: Sequence[Any]) -> set[str]:
    """The ids stored as given: `stored` maps an id (of these, or a passage of one of these parents)
    to its (parent, text, metadata). A document whose passages changed in number is changed whole."""
    same = {i for i, t, m, p in zip(ids, texts, metadata, parents) if stored.get(i) == (p, t, m)}
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


def publish_manifest(w: Writer, manifest: dict[str, Any]) -> None:
    """Write a changed manifest, keep its copy in the catalog (to restore a lost manifest from), and
    commit an empty generation so every reader loads it (under the writer lock)."""
    store.write_manifest(w.path, manifest)
    w.catalog.set_meta("manifest", store.canonical_manifest(manifest))
    w.catalog.commit()

