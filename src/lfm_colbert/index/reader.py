"""Reading an index: the committed state a read sees, search itself, and documents read back.

Every read answers from one committed state. `Reader.snapshot()` pins the current generation (see
lfm_colbert.index.pins) and hands out a `State`: the manifest, codec and segments of that
generation, with each segment's live rows. Whatever writers commit meanwhile, the state's files
and catalog rows stay until the pin is released, so a search never retries and never loses a hit.

States are immutable and shared: threads searching at once use the same one (or each its own,
when a commit lands between them); loading a new one takes a lock, searching does not.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from lfm_colbert.cpu import plan as cpu_plan
from lfm_colbert.errors import IndexFormatError, InputError
from lfm_colbert.index import engine, lexical, pins, store
from lfm_colbert.index.checks import check_id
from lfm_colbert.index.metadata import Catalog
from lfm_colbert.index.segments import segment_dir

@dataclass
class Hit:
    """One search result."""

    id: str
    score: float
    text: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Document:
    """A stored document: its id, text (None when added as vectors only), metadata, and the id of
    the source document it is a passage of (None for a whole document)."""

    id: str
    text: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    parent: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class State:
    """One committed state of the index, as searched."""

    generation: int
    manifest: dict[str, Any]
    codec: engine.Codec | None
    order: list[int]  # segment ids, in search order
    segments: dict[int, engine.Segment]  # segment id -> segment, alive masks of this generation
    records: dict[int, dict[str, Any]]  # segment id -> catalog record

    @property
    def compressed(self) -> bool:
        return bool(self.manifest["storage"].get("nbits"))


class Reader:
    """Committed states of one index directory, and every read of it."""

    def __init__(self, path: Path, catalog: Catalog, manifest: dict[str, Any], verify: bool) -> None:
        self.path = path
        self.catalog = catalog
        self.manifest = manifest  # the latest read
        self.verify = verify
        self._state: State | None = None
        self._codec: engine.Codec | None = None
        self._load_lock = threading.Lock()

    # -- states -----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def snapshot(self) -> Iterator[State]:
        """The current committed state, pinned until the block ends."""
        g0 = self.catalog.generation()
        pin = pins.pin(self.path, g0)
        try:
            yield self.state_at(self.catalog.generation())
        finally:
            if pin is not None:
                pin.release()

    def state_at(self, gen: int) -> State:
        """The state of generation `gen` (which the caller pinned, or holds the writer lock over)."""
        state = self._state
        if state is not None and state.generation == gen and not self.catalog.version == 1:
            return state
        with self._load_lock:
            state = self._state
            if state is not None and state.generation == gen and not self.catalog.version == 1:
                return state
            new = self._load(gen, state)
            if state is None or new.generation >= state.generation:
                self._state = new
            return new

    def _load(self, gen: int, previous: State | None) -> State:
        manifest = store.read_manifest(self.path)
        self.manifest = manifest
        dim = manifest["dim"]
        if manifest.get("codec") and self._codec is None:
            self._codec = engine.load_codec(self.path / "codec", manifest["codec"], self.verify, dim)
        codec = self._codec if manifest.get("codec") else None
        records = self.catalog.segments(gen)
        live = self.catalog.live_rows(gen)
        known = previous.segments if previous is not None else {}
        segments: dict[int, engine.Segment] = {}
        for rec in records:
            seg = known.get(rec["id"]) or engine.open_segment(self.path, rec, self.verify, dim, codec)
            alive = np.zeros(rec["n_docs"], dtype=bool)
            rows = live.get(rec["id"], [])
            if rows and (rows[-1] >= rec["n_docs"] or rows[0] < 0):
                raise IndexFormatError(f"corrupted index file {self.catalog.path}: rows past the end of segment {rec['id']}")
            alive[rows] = True
            if not np.array_equal(alive, seg.alive):
                seg = engine.with_alive(seg, alive)
            segments[rec["id"]] = seg
        unknown = set(live) - set(segments)
        if unknown:
            raise IndexFormatError(f"corrupted index file {self.catalog.path}: documents in unknown segments {sorted(unknown)[:5]}")
        return State(gen, manifest, codec, [r["id"] for r in records], segments, {r["id"]: r for r in records})

    def drop(self) -> None:
        """Forget the loaded state (its memory maps close once no search holds it)."""
        with self._load_lock:
            self._state = None
            self._codec = None

    def current(self) -> State:
        """The latest state, unpinned: for a writer, under the writer lock (no one else can purge)."""
        return self.state_at(self.catalog.generation())

    # -- search ----------------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int, filter: Mapping[str, Any] | None) -> list[list[Hit]]:
        """Top-k hits per query of (B, Q, D), all from one committed state."""
        with self.snapshot() as state:
            raw = self.rank(state, queries, k, filter)
            slots = [(state.order[si], row) for hits in raw for si, row, _ in hits]
            return _hits(raw, self.catalog.lookup(slots))

    def rank(self, state: State, queries: np.ndarray, k: int, filter: Mapping[str, Any] | None) -> list[list[tuple[int, int, float]]]:
        """Top-k (position in state.order, row, score) per query."""
        segs = [state.segments[s] for s in state.order]
        allowed = None
        if filter is not None:
            slots = self.catalog.filtered_slots(filter, state.generation)
            allowed = []
            for sid, seg in zip(state.order, segs):
                m = np.zeros(len(seg.alive), dtype=bool)
                m[slots.get(sid, [])] = True
                allowed.append(m)
        return engine.rank(queries, segs, state.codec, k, allowed)

    # -- documents ---------------------------------------------------------------------------------
    def get(self, wanted: list[str]) -> list[Document | None]:
        for i in wanted:
            check_id(i)
        with self.snapshot() as state:
            found = self.catalog.documents(wanted, state.generation)
        return [Document(i, found[i][5], found[i][6], found[i][1]) if i in found else None for i in wanted]

    def list(self, filter: Mapping[str, Any] | None, limit: int | None, after: str | None,
             gen: int | None = None) -> list[Document]:
        if after is not None:
            check_id(after, "after")
        rows = self.catalog.scan(filter, after, -1 if limit is None else limit, gen)
        return [Document(i, text, meta, parent) for i, parent, text, meta in rows]

    def iterate(self, page: int = 1000) -> Iterator[Document]:
        """Every document of one committed state (pinned while the iteration lasts), a page at a time."""
        with self.snapshot() as state:
            after = None
            while docs := self.list(None, page, after, state.generation):
                yield from docs
                after = docs[-1].id

    def vectors(self, wanted: list[str]) -> list[np.ndarray]:
        for i in wanted:
            check_id(i)
        with self.snapshot() as state:
            found = self.catalog.documents(wanted, state.generation)
            missing = [i for i in wanted if i not in found]
            if missing:
                raise InputError(f"{len(missing)} id(s) not in the index: {', '.join(map(repr, missing[:5]))}")
            return [engine.doc_vectors(state.segments[found[i][2]], found[i][3], state.codec) for i in wanted]

    def metadata_keys(self) -> dict[str, int]:
        return self.catalog.metadata_keys()

    # -- description -------------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        with self.snapshot() as state:
            n_docs, n_tokens = self.catalog.counts(state.generation)
            records = [state.records[s] for s in state.order]
            sizes = _sizes(self.path, records)
            lexical_info = lexical.describe(self.catalog, state.generation)
        manifest = state.manifest
        stored = sum(r["n_tokens"] for r in records)
        vec_bytes = sum(sizes.get((r["id"], f), 0) for r in records
                        for f in (("codes.npy", "residuals.npy") if engine.is_coded(r) else ("vectors.npy",)))
        total = sum(sizes.values())
        codec = manifest.get("codec") or {}
        compressed = bool(manifest["storage"].get("nbits"))
        trained = codec.get("trained_on")
        return {
            "path": str(self.path),
            "format_version": manifest["version"],
            "created": manifest.get("created"),
            "model": manifest["model"],
            "storage": manifest["storage"],
            "n_centroids": codec.get("n_centroids"),
            "train_tokens": manifest["storage"].get("train_tokens", 1) if compressed else None,
            "codec_trained_on_tokens": trained,
            "codec_growth": round(n_tokens / trained, 2) if trained else None,
            "float16_segments": sum(not engine.is_coded(r) for r in records) if compressed else None,
            "documents": n_docs,
            "tokens": n_tokens,
            "segments": len(records),
            "deleted_fraction": round(1 - n_tokens / stored, 4) if stored else 0.0,
            "bytes_on_disk": total,
            "bytes_per_token_vectors": round(vec_bytes / stored, 2) if stored else None,
            "bytes_per_token_total": round(total / stored, 2) if stored else None,
            "search_kernel": cpu_plan().describe(),  # MaxSim dtype and engine this CPU gets (lfm_colbert.cpu)
            "lexical": lexical_info,  # the keyword index of hybrid search (lfm_colbert.index.lexical), None if absent
        }

    def verify_files(self) -> None:
        """Every file of one committed state against its checksum, and the catalog's rows."""
        self.catalog.check()
        with self.snapshot() as state:
            manifest = store.read_manifest(self.path)
            codec = None
            if manifest.get("codec"):
                codec = engine.load_codec(self.path / "codec", manifest["codec"], True, manifest["dim"])
            for sid in state.order:
                engine.open_segment(self.path, state.records[sid], True, manifest["dim"], codec)


def _hits(raw: list[list[tuple[int, int, float]]], docs: list[tuple[str, str | None, dict]]) -> list[list[Hit]]:
    it = iter(docs)
    return [[Hit(d[0], float(score), d[1], d[2]) for (_, _, score), d in zip(hits, it)] for hits in raw]


def _sizes(root: Path, records: Sequence[Mapping[str, Any]]) -> dict[Any, int]:
    """Bytes of each file of a state: manifest, catalog, codec, and its segments' files (pinned)."""
    out: dict[Any, int] = {}
    for name in (store.MANIFEST, store.CATALOG, store.CATALOG + "-journal", "codec/centroids.npy", "codec/pq_centroids.npy"):
        try:
            out[name] = (root / name).stat().st_size
        except OSError:
            pass
    for r in records:
        for f in r["files"]:
            try:
                out[(r["id"], f)] = (segment_dir(root, r["id"]) / f).stat().st_size
            except OSError:
                pass
    return out
