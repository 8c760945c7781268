"""Reading an index: the committed state a search sees, search itself, and documents read back."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from lfm_colbert.errors import IndexFormatError, InputError
from lfm_colbert.index import engine, store
from lfm_colbert.index.metadata import Catalog
from lfm_colbert.index.segments import read_segment, segment_dir

# A reader never takes the writer lock: when a writer commits during its refresh or search (moving or
# deleting what it was reading), it looks again, up to this many times.
READ_TRIES = 5


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


def check_k(k: Any, name: str = "k") -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
        raise InputError(f"{name} must be a positive integer, not {k!r}")


class Reader:
    """The segments of the last committed state looked at, and every read of the index."""

    def __init__(self, path: Path, catalog: Catalog, manifest: dict[str, Any], verify: bool) -> None:
        self.path = path
        self.catalog = catalog
        self.manifest = manifest
        self.verify = verify
        self.codec: engine.Codec | None = None
        self.segments: dict[int, engine.Segment] = {}  # segment id -> segment
        self.order: list[int] = []  # segment ids in search order
        self.version: int | None = None

    @property
    def compressed(self) -> bool:
        return bool(self.manifest["storage"].get("nbits"))

    # -- state -----------------------------------------------------------------------------------
    def refresh(self, force: bool = False) -> None:
        """(Re)load segments when the catalog changed since the last look (here or in another process)."""
        for attempt in range(READ_TRIES):
            with self.catalog.snapshot():  # segments and live rows of one committed state
                version = self.catalog.data_version()
                if not force and version == self.version:
                    return
                records = self.catalog.segments()
                live = self.catalog.live_rows()
            try:
                self.load(records, live)
            except IndexFormatError:
                # A writer that committed since may have removed files this state named (merged or
                # compacted segments): look again. With no commit in between, the files are damaged.
                if attempt == READ_TRIES - 1 or self.catalog.data_version() == version:
                    raise
                continue
            self.version = version
            return

    def load(self, records: list[dict[str, Any]], live: dict[int, list[int]]) -> None:
        self.manifest = store.read_manifest(self.path)
        if self.compressed and self.manifest["codec"] and self.codec is None:
            self.codec = engine.load_codec(self.path / "codec", self.manifest["codec"], self.verify)
        segments: dict[int, engine.Segment] = {}
        for rec in records:
            seg = self.segments.get(rec["id"]) or engine.open_segment(self.path, rec, self.verify)
            alive = np.zeros(rec["n_docs"], dtype=bool)
            alive[live.get(rec["id"], [])] = True
            if not np.array_equal(alive, seg.alive):
                seg = engine.with_alive(seg, alive)
            segments[rec["id"]] = seg
        self.segments = segments
        self.order = [r["id"] for r in records]

    def drop(self, sids: Sequence[int]) -> None:
        """Forget segments a writer here replaced (their files are gone)."""
        self.segments = {k: v for k, v in self.segments.items() if k not in sids}

    # -- search ----------------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int, filter: Mapping[str, Any] | None) -> list[list[Hit]]:
        for attempt in range(READ_TRIES):
            self.refresh()
            raw = self.rank(queries, k, filter)
            slots = [(self.order[si], row) for hits in raw for si, row, _ in hits]
            docs = iter(self.catalog.lookup(slots))
            found = [[(next(docs), score) for _, _, score in hits] for hits in raw]
            # A writer's commit since the refresh moved or deleted a hit: rank again on the new state.
            if all(d is not None for hits in found for d, _ in hits):
                break
        # Still moving after READ_TRIES: drop what was deleted meanwhile rather than fail the search.
        return [[Hit(d[0], float(s), d[1], d[2]) for d, s in hits if d is not None] for hits in found]

    def rank(self, queries: np.ndarray, k: int, filter: Mapping[str, Any] | None) -> list[list[tuple[int, int, float]]]:
        """Top-k (position in self.order, row, score) per query, on the state of the last refresh."""
        segs = [self.segments[s] for s in self.order]
        allowed = None
        if filter is not None:
            slots = self.catalog.filtered_slots(filter)
            allowed = []
            for sid, seg in zip(self.order, segs):
                m = np.zeros(len(seg.alive), dtype=bool)
                m[slots.get(sid, [])] = True
                allowed.append(m)
        return engine.rank(queries, segs, self.codec, k, allowed)

    # -- documents ---------------------------------------------------------------------------------
    def get(self, wanted: list[str]) -> list[Document | None]:
        found = self.catalog.documents(wanted)
        return [Document(i, found[i][1], found[i][2], found[i][0]) if i in found else None for i in wanted]

    def list(self, filter: Mapping[str, Any] | None, limit: int | None, after: str | None) -> list[Document]:
        rows = self.catalog.scan(filter, after, -1 if limit is None else limit)
        return [Document(i, text, meta, parent) for i, parent, text, meta in rows]

    def iterate(self) -> Iterator[Document]:
        after = None
        while page := self.list(None, 1000, after):
            yield from page
            after = page[-1].id

    def vectors(self, wanted: list[str]) -> list[np.ndarray]:
        for attempt in range(READ_TRIES):
            self.refresh()
            slots = self.catalog.get(wanted)
            missing = [i for i in wanted if i not in slots]
            if missing:
                raise InputError(f"{len(missing)} id(s) not in the index: {', '.join(map(repr, missing[:5]))}")
            if all(sid in self.segments for sid, _ in slots.values()):
                break
            if attempt == READ_TRIES - 1:
                raise IndexFormatError(f"{self.path} kept changing while its vectors were read; try again")
        return [engine.doc_vectors(self.segments[sid], row, self.codec) for sid, row in (slots[i] for i in wanted)]

    # -- description -------------------------------------------------------------------------------
    def train_tokens(self) -> int | None:
        """Tokens a compressed index holds before its codec is trained (format 1 indexes: the first add)."""
        return self.manifest["storage"].get("train_tokens", 1) if self.compressed else None

    def codec_growth(self) -> float | None:
        """Live tokens over the tokens the codec was fitted to (None before training, or for format 1)."""
        trained = (self.manifest.get("codec") or {}).get("trained_on")
        return round(self.catalog.counts()[1] / trained, 2) if trained else None

    def info(self) -> dict[str, Any]:
        n_docs, n_tokens = self.catalog.counts()
        records = self.catalog.segments()
        stored = sum(r["n_tokens"] for r in records)
        sizes: dict[str, int] = {}
        for p in self.path.rglob("*"):
            if p.is_file():
                sizes[p.suffix or p.name] = sizes.get(p.suffix or p.name, 0) + p.stat().st_size
        vec_bytes = sum(
            (segment_dir(self.path, r["id"]) / f).stat().st_size
            for r in records
            for f in (("codes.npy", "residuals.npy") if engine.is_coded(r) else ("vectors.npy",))
            if (segment_dir(self.path, r["id"]) / f).exists()
        )
        codec = self.manifest.get("codec") or {}
        return {
            "path": str(self.path),
            "format_version": self.manifest["version"],
            "created": self.manifest.get("created"),
            "model": self.manifest["model"],
            "storage": self.manifest["storage"],
            "n_centroids": codec.get("n_centroids"),
            "train_tokens": self.train_tokens(),
            "codec_trained_on_tokens": codec.get("trained_on"),
            "codec_growth": self.codec_growth(),
            "float16_segments": sum(not engine.is_coded(r) for r in records) if self.compressed else None,
            "documents": n_docs,
            "tokens": n_tokens,
            "segments": len(records),
            "deleted_fraction": round(1 - n_tokens / stored, 4) if stored else 0.0,
            "bytes_on_disk": sum(sizes.values()),
            "bytes_per_token_vectors": round(vec_bytes / stored, 2) if stored else None,
            "bytes_per_token_total": round(sum(sizes.values()) / stored, 2) if stored else None,
        }

    def verify_files(self) -> None:
        self.catalog.check()
        codec = self.manifest.get("codec")
        if codec:
            engine.load_codec(self.path / "codec", codec, verify=True)
        for rec in self.catalog.segments():
            read_segment(self.path, rec, verify=True, mmap=("vectors", "residuals"))
