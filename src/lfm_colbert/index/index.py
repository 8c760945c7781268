"""`Index`: an embedded on-disk ColBERT index with exact or compressed MaxSim search.

    >>> index = Index("my-index", model)                 # creates the directory, or opens it
    >>> index.add(["Penguins live in the south.", ...], ids=["p1", ...], metadata=[{"lang": "en"}, ...])
    >>> index.search("¿Dónde viven los pingüinos?", k=5, filter={"lang": "en"})
    [Hit(id='p1', score=27.4, text='Penguins live in the south.', metadata={'lang': 'en'})]
    >>> index.delete(["p1"])

Layout (all plain files; see lfm_colbert.index.segments for the arrays):

    manifest.json     format version, model description (id, variant, dim, fingerprint, ColBERT
                      settings), storage ("float16", or "plaid" with nbits and rescore), codec checksums
    catalog.sqlite    ids, texts, metadata, and which segment row holds each document
    codec/            compressed indexes: centroids.npy, pq_centroids.npy (residual product quantizer)
    segments/NNNNNN/  immutable arrays, one directory per add: float16 vectors, or codes and
                      residuals (a compressed index holds float16 segments until its codec is trained)
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import os
import shutil
import uuid
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from lfm_colbert.errors import IndexFormatError, InputError
from lfm_colbert.index import store
from lfm_colbert.index.exact import ExactSegment, exact_search
from lfm_colbert.index.metadata import Catalog, clean_metadata
from lfm_colbert.index.plaid import Codec, PlaidParams, PlaidSegment, build_ivf, default_centroids, plaid_search
from lfm_colbert.index.segments import next_segment_id, read_segment, remove_orphans, segment_dir, write_segment
from lfm_colbert.cpu import plan as _cpu_plan
from lfm_colbert.scoring import stack_queries, token_ranges
from lfm_colbert.tokenization import check_texts

# Written at most this many tokens per segment, so an add of a large collection streams to disk.
SEGMENT_TOKENS = 1 << 20
# Rewrite segments once this fraction of their stored tokens belongs to deleted documents.
COMPACT_AT = 0.25
# A compressed index keeps float16 vectors until an add (or a `bulk()` block) leaves it holding this
# many tokens, then fits its codec to a sample of all of them. Centroids fitted to a first handful of
# documents would serve every later add: 3,000 clustered documents added after a first one of 87
# tokens searched with recall 0.27, not 0.98.
TRAIN_TOKENS = 1 << 18
# The codec is not refitted as the index grows (the original vectors are gone). Past this many times
# the tokens it was fitted to, adds warn: at 3.8x (10k clustered documents, codec fitted to the
# first 266k tokens) recall@10 fell from 0.986 to 0.973 at 4 bits and from 0.964 to 0.926 at 2 bits.
REFIT_GROWTH = 4.0
# Every add writes at least one segment, and each costs a search fixed work: 1,000 documents added
# one at a time searched at 7.8 queries/s in 1,000 segments, 64 once merged into 20. Segments under
# SEGMENT_TOKENS / MERGE_FANIN are grouped in size tiers (powers of MERGE_FANIN); a tier holding
# MERGE_FANIN of them becomes one segment, so each token is rewritten about log8(1M / its size) times.
MERGE_FANIN = 8
# A reader never takes the writer lock: when a writer commits during its refresh or search (moving or
# deleting what it was reading), it looks again, up to this many times.
READ_TRIES = 5
_OWN_FILES = {store.MANIFEST, store.CATALOG, store.CATALOG + "-journal", store.LOCK, "segments", "codec"}


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


def _describe(model: Any) -> dict[str, Any]:
    if isinstance(model, Mapping):
        desc = dict(model)
    else:
        desc = dict(model.describe())
    if not isinstance(desc.get("dim"), int) or desc["dim"] <= 0:
        raise InputError("the model description needs a positive integer 'dim'")
    return desc


def _load_model(spec: str | None, dtype: str | None = None, backend: str = "auto", device: str | None = None) -> Any:
    from lfm_colbert.encoder import ColBERT

    return ColBERT(model=spec, dtype=dtype, backend=backend, device=device)


class Index:
    """A directory holding a searchable collection of ColBERT documents.

    model:    a loaded `ColBERT`, a hub id or local path (loaded when first needed), None (the
              model the index was built with; for a new index, the default model), or a dict
              like `ColBERT.describe()` for an index fed with precomputed vectors only.
    compress: None for exact search over float16 vectors (256 bytes per token), or 2 / 4 for
              PLAID-style compressed search (34 / 66 bytes per token); fixed when the index is
              created. Compression pays off from roughly 100k documents.
    rescore:  with `compress`, also keep the float16 vectors (290 / 322 bytes per token on disk)
              and score the final candidates on them instead of on decoded vectors: compressed
              speed, exact scores. The float16 file is memory-mapped; only candidates are read.
    train_tokens: with `compress`, the index stays exact (float16) until an add leaves it holding this
              many tokens (default TRAIN_TOKENS, 262,144), then fits its codec to all of them and
              compresses them; fixed at creation. 1 trains on the first add, however small. Adds
              inside `with index.bulk():` count as one.
    verify:   check each file's sha256 against the one recorded when it was written, when loaded.
    backend, device: where the index runs a model it loads itself (see `ColBERT`); the default
              picks MLX on Apple Silicon, else PyTorch on CUDA when present, else the CPU.
    """

    def __init__(
        self,
        path: str | Path,
        model: Any = None,
        *,
        compress: int | None = None,
        n_centroids: int | None = None,
        rescore: bool = False,
        train_tokens: int | None = None,
        create: bool = True,
        verify: bool = True,
        backend: str = "auto",
        device: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.verify = verify
        self._model_obj: Any = None
        self._model_spec: str | None = None
        if (backend != "auto" or device is not None) and model is not None and not isinstance(model, (str, os.PathLike)):
            raise InputError("backend and device apply to a model the index loads; this one is loaded already")
        self._placement = {"backend": backend, "device": device}
        if compress not in (None, 2, 4):
            raise InputError(f"compress must be 2 or 4 (bits per dimension), not {compress!r}")
        if train_tokens is not None and (isinstance(train_tokens, bool) or not isinstance(train_tokens, int) or train_tokens < 1):
            raise InputError(f"train_tokens must be a positive integer, not {train_tokens!r}")
        if (self.path / store.MANIFEST).is_file():
            self.manifest = store.read_manifest(self.path)
            have = self.manifest["storage"].get("nbits")
            if compress is not None and compress != have:
                kind = f"{have}-bit compressed" if have else "exact (uncompressed)"
                raise InputError(f"{self.path} is an existing {kind} index; compression is chosen at creation")
            if rescore and not self.manifest["storage"].get("rescore"):
                raise InputError(f"{self.path} keeps no float16 vectors to rescore with; rescore is chosen at creation")
            if train_tokens is not None and not self.compressed:
                raise InputError(f"{self.path} is an exact index; train_tokens applies to compressed indexes")
            if train_tokens is not None and train_tokens != self.train_tokens:
                raise InputError(f"{self.path} trains its codec at {self.train_tokens} tokens; train_tokens is chosen at creation")
        elif not create:
            raise IndexFormatError(f"no lfm-colbert index at {self.path}")
        elif (rescore or train_tokens is not None) and compress is None:
            what = "rescore" if rescore else "train_tokens"
            raise InputError(f"{what} applies to compressed indexes (compress=2 or 4); exact search already is exact")
        else:
            self._create(model, compress, n_centroids, rescore, train_tokens or TRAIN_TOKENS)
        self.catalog = Catalog(self.path / store.CATALOG)
        self._attach(model)
        self._codec: Codec | None = None
        self._segments: dict[int, Any] = {}  # segment id -> ExactSegment | PlaidSegment
        self._order: list[int] = []  # segment ids in search order
        self._version: int | None = None
        self._defer_training = False

    # -- creation and model --------------------------------------------------------------------
    def _create(self, model: Any, compress: int | None, n_centroids: int | None, rescore: bool, train_tokens: int) -> None:
        if self.path.exists() and not self.path.is_dir():
            raise InputError(f"{self.path} exists and is not a directory")
        if self.path.is_dir():
            foreign = [p.name for p in self.path.iterdir() if p.name not in _OWN_FILES and not p.name.startswith(".")]
            if foreign:
                raise InputError(f"{self.path} exists and is not an lfm-colbert index (it holds {foreign[0]!r}, ...)")
            for name in ("segments", "codec", store.CATALOG, store.CATALOG + "-journal"):  # an interrupted creation
                p = self.path / name
                shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
        if model is None or isinstance(model, (str, os.PathLike)):
            model = _load_model(None if model is None else str(model), **self._placement)
        if not isinstance(model, Mapping):
            self._model_obj = model
        desc = _describe(model)
        self.path.mkdir(parents=True, exist_ok=True)
        Catalog(self.path / store.CATALOG, create=True).close()
        self.manifest = {
            "format": store.FORMAT_NAME,
            "version": store.FORMAT_VERSION,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "model": desc,
            "dim": desc["dim"],
            "storage": {"kind": "plaid", "nbits": compress, "n_centroids": n_centroids, "rescore": bool(rescore),
                        "train_tokens": train_tokens}
            if compress
            else {"kind": "float16", "nbits": None},
            "codec": None,
        }
        store.write_manifest(self.path, self.manifest)  # last: the manifest is what makes it an index

    def _attach(self, model: Any) -> None:
        if model is None:
            return
        if isinstance(model, (str, os.PathLike)):
            self._model_spec = str(model)  # loaded and checked on first use
            return
        self._check_model(_describe(model))
        if not isinstance(model, Mapping):
            self._model_obj = model

    def _check_model(self, desc: Mapping[str, Any]) -> None:
        have = self.manifest["model"]
        for key in ("dim", "variant", "fingerprint"):
            if key in have and key in desc and have[key] != desc[key]:
                raise IndexFormatError(
                    f"{self.path} was built with model {have.get('model_id')!r} ({key} {have[key]!r}); "
                    f"the model given is {desc.get('model_id')!r} ({key} {desc[key]!r}). "
                    "Search an index with the model that built it, or build a new index."
                )

    @property
    def model(self) -> Any:
        """The encoder, loaded on first use (the one given, else the one recorded in the manifest)."""
        if self._model_obj is None:
            spec = self._model_spec or self.manifest["model"].get("model_id")
            if not spec:
                raise InputError(f"{self.path} holds precomputed vectors only; pass model= to encode text")
            # Queries are encoded at the precision the documents were (when the index recorded it).
            model = _load_model(spec, self.manifest["model"].get("dtype"), **self._placement)
            self._check_model(_describe(model))
            self._model_obj = model
        return self._model_obj

    @property
    def compressed(self) -> bool:
        return bool(self.manifest["storage"].get("nbits"))

    @property
    def train_tokens(self) -> int | None:
        """Tokens a compressed index holds before its codec is trained (format 1 indexes: the first add)."""
        return self.manifest["storage"].get("train_tokens", 1) if self.compressed else None

    # -- reading state ---------------------------------------------------------------------------
    def _refresh(self, force: bool = False) -> None:
        """(Re)load segments when the catalog changed since the last look (here or in another process)."""
        for attempt in range(READ_TRIES):
            with self.catalog.snapshot():  # segments and live rows of one committed state
                version = self.catalog.data_version()
                if not force and version == self._version:
                    return
                records = self.catalog.segments()
                live = self.catalog.live_rows()
            try:
                self._load(records, live)
            except IndexFormatError:
                # A writer that committed since may have removed files this state named (merged or
                # compacted segments): look again. With no commit in between, the files are damaged.
                if attempt == READ_TRIES - 1 or self.catalog.data_version() == version:
                    raise
                continue
            self._version = version
            return

    def _load(self, records: list[dict[str, Any]], live: dict[int, list[int]]) -> None:
        self.manifest = store.read_manifest(self.path)
        if self.compressed and self.manifest["codec"] and self._codec is None:
            c = self.manifest["codec"]
            self._codec = Codec.load(self.path / "codec", c["nbits"], c["files"] if self.verify else None, c.get("format"))
        segments: dict[int, Any] = {}
        for rec in records:
            seg = self._segments.get(rec["id"]) or self._load_segment(rec)
            alive = np.zeros(rec["n_docs"], dtype=bool)
            alive[live.get(rec["id"], [])] = True
            if not np.array_equal(alive, seg.alive):
                seg.alive = alive
                if isinstance(seg, ExactSegment):
                    seg._buckets = None
            segments[rec["id"]] = seg
        self._segments = segments
        self._order = [r["id"] for r in records]

    def _load_segment(self, rec: dict[str, Any]) -> Any:
        coded = _is_coded(rec)
        a = read_segment(self.path, rec, self.verify, mmap=("residuals", "vectors") if coded else ("vectors",))
        doclens = a["doclens"].astype(np.int64)
        offsets = np.zeros(len(doclens) + 1, dtype=np.int64)
        np.cumsum(doclens, out=offsets[1:])
        alive = np.zeros(len(doclens), dtype=bool)
        if coded:
            return PlaidSegment(a["codes"], a["residuals"], offsets, a["ivf_offsets"], a["ivf_docs"], alive,
                                a.get("vectors"))
        return ExactSegment(a["vectors"], offsets, alive)

    def __len__(self) -> int:
        return self.catalog.counts()[0]

    def __contains__(self, doc_id: object) -> bool:
        return isinstance(doc_id, str) and bool(self.catalog.existing([doc_id]))

    # -- reading documents back ----------------------------------------------------------------
    def get(self, ids: str | Sequence[str]) -> Document | None | list[Document | None]:
        """The stored document with this id (None if there is none), or a list for a list of ids."""
        single = isinstance(ids, str)
        wanted = [ids] if single else list(ids)
        for i in wanted:
            if not isinstance(i, str):
                raise InputError(f"document ids are strings, not {type(i).__name__}")
        found = self.catalog.documents(wanted)
        docs = [Document(i, found[i][1], found[i][2], found[i][0]) if i in found else None for i in wanted]
        return docs[0] if single else docs

    def list(self, filter: Mapping[str, Any] | None = None, limit: int | None = None, after: str | None = None) -> list[Document]:
        """Documents in id order, those matching `filter` only, at most `limit`, starting after id `after`
        (pass the last id of one page to get the next)."""
        if limit is not None:
            _check_k(limit, "limit")
        rows = self.catalog.scan(filter, after, -1 if limit is None else limit)
        return [Document(i, text, meta, parent) for i, parent, text, meta in rows]

    def __iter__(self) -> Iterator[Document]:
        """Every document, in id order, read a page at a time."""
        after = None
        while page := self.list(limit=1000, after=after):
            yield from page
            after = page[-1].id

    def vectors(self, ids: Sequence[str]) -> list[np.ndarray]:
        """The stored token vectors of documents `ids`, each (T_i, dim) float32, read from one committed
        state: as stored for an exact index (float16 precision), decoded from the codes for a compressed
        one (approximate, unless it keeps float16 vectors with rescore). For moving a collection to
        another store without encoding it again."""
        wanted = [ids] if isinstance(ids, str) else list(ids)
        for attempt in range(READ_TRIES):
            self._refresh()
            slots = self.catalog.get(wanted)
            missing = [i for i in wanted if i not in slots]
            if missing:
                raise InputError(f"{len(missing)} id(s) not in the index: {', '.join(map(repr, missing[:5]))}")
            if all(sid in self._segments for sid, _ in slots.values()):
                break
            if attempt == READ_TRIES - 1:
                raise IndexFormatError(f"{self.path} kept changing while its vectors were read; try again")
        out = []
        for i in wanted:
            sid, row = slots[i]
            seg = self._segments[sid]
            lo, hi = int(seg.offsets[row]), int(seg.offsets[row + 1])
            if isinstance(seg, ExactSegment):
                out.append(np.asarray(seg.tokens[lo:hi], dtype=np.float32))
            elif seg.vectors is not None:
                out.append(np.asarray(seg.vectors[lo:hi], dtype=np.float32))
            else:
                out.append(self._codec.decode(seg.codes[lo:hi], np.asarray(seg.residuals[lo:hi])))
        return out

    def metadata_keys(self) -> dict[str, int]:
        """{metadata key: number of documents that have it}, for discovering what filters can use."""
        return self.catalog.metadata_keys()

    def info(self) -> dict[str, Any]:
        """Counts, sizes and settings, JSON-able."""
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
            for f in (("codes.npy", "residuals.npy") if _is_coded(r) else ("vectors.npy",))
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
            "train_tokens": self.train_tokens,
            "codec_trained_on_tokens": codec.get("trained_on"),
            "codec_growth": self._codec_growth(),
            "float16_segments": sum(not _is_coded(r) for r in records) if self.compressed else None,
            "documents": n_docs,
            "tokens": n_tokens,
            "segments": len(records),
            "deleted_fraction": round(1 - n_tokens / stored, 4) if stored else 0.0,
            "bytes_on_disk": sum(sizes.values()),
            "bytes_per_token_vectors": round(vec_bytes / stored, 2) if stored else None,
            "bytes_per_token_total": round(sum(sizes.values()) / stored, 2) if stored else None,
            "search_kernel": _cpu_plan().describe(),  # MaxSim dtype and engine this CPU gets (lfm_colbert.cpu)
        }

    def _codec_growth(self) -> float | None:
        """Live tokens over the tokens the codec was fitted to (None before training, or for format 1)."""
        trained = (self.manifest.get("codec") or {}).get("trained_on")
        return round(self.catalog.counts()[1] / trained, 2) if trained else None

    def verify_files(self) -> None:
        """Check every file against its recorded checksum and the catalog's integrity; raise naming the bad file."""
        self.catalog.check()
        codec = self.manifest.get("codec")
        if codec:
            Codec.load(self.path / "codec", codec["nbits"], codec["files"], codec.get("format"))
        for rec in self.catalog.segments():
            read_segment(self.path, rec, verify=True, mmap=("vectors", "residuals"))

    # -- writing -------------------------------------------------------------------------------
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
        """Encode and add documents; returns their ids (generated when not given).

        An id that already exists is an error unless `upsert=True`, which replaces it (and, for a
        `parents` id, every passage of that parent). The whole call is one atomic write.
        `progress_bar`: an open tqdm bar to advance instead of opening one (a bar across several adds).
        """
        if isinstance(documents, str):
            raise InputError("add() takes a list of documents, not one string")
        docs = list(documents)
        docs = check_texts(docs) if docs else []  # one error naming every empty or non-string text
        model = self.model

        def vectors() -> Iterator[np.ndarray]:
            from tqdm.auto import tqdm

            bar = progress_bar or tqdm(total=len(docs), desc="encoding", unit="doc",
                                       disable=None if show_progress is None else not show_progress)
            step = max(batch_size, 256)
            for s in range(0, len(docs), step):
                yield from model.encode(docs[s : s + step], is_query=False, batch_size=batch_size, show_progress_bar=False)
                bar.update(min(step, len(docs) - s))
            if progress_bar is None:
                bar.close()

        return self._add(vectors(), len(docs), ids, docs, metadata, parents, upsert)

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
        return self._add(iter(vectors), len(vectors), ids, texts, metadata, parents, upsert)

    def unchanged(
        self,
        ids: Sequence[str],
        texts: Sequence[str | None],
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
        parents: Sequence[str | None] | None = None,
    ) -> set[str]:
        """The ids already stored with this very text, metadata and parent: adding them again would only
        re-encode them. A parent's passages count only all together, when none of them changed and
        the index holds no other passage of that parent (a shorter file must replace the longer one)."""
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

    def upsert(self, documents: Sequence[str], ids: Sequence[str], metadata: Any = None, **kw: Any) -> list[str]:
        """Add documents, replacing any with the same ids."""
        return self.add(documents, ids, metadata, upsert=True, **kw)

    def _add(
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
        dim = self.manifest["dim"]
        with store.writer_lock(self.path):
            self._refresh(force=True)
            known = set(self._order)
            remove_orphans(self.path, known)
            existing = self.catalog.existing(ids)
            if existing and not upsert:
                shown = ", ".join(sorted(existing)[:5])
                raise InputError(f"{len(existing)} id(s) already in the index ({shown}); use upsert to replace them")
            replace = sorted(existing | set(self.catalog.ids_with_parent(sorted({p for p in parents if p})))) if upsert else []
            seg_id = next_segment_id(self.path, known)
            if self.compressed and self._codec is None and self.manifest["version"] < 2:
                self.manifest["version"] = store.FORMAT_VERSION  # float16 segments may follow: older readers must refuse
                store.write_manifest(self.path, self.manifest)
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
                if tokens >= SEGMENT_TOKENS:
                    flush()
                    tokens = 0
            flush()
            if start != n:
                raise InputError(f"expected {n} document vectors, got {start}")
            store.pause_point("add:segments-written")
            self.catalog.commit(written, replace=replace, pause=lambda: store.pause_point("add:before-commit"))
            self._refresh(force=True)
            store.pause_point("add:committed")
            if not self._defer_training:
                self._train_when_due()
        self._maybe_compact()
        if not self._defer_training:  # a bulk block warns once, at its end
            self._warn_if_outgrown(stacklevel=4)
        return ids

    def _warn_if_outgrown(self, stacklevel: int) -> None:
        growth = self._codec_growth()
        if growth and growth >= REFIT_GROWTH:
            warnings.warn(
                f"{self.path} holds {growth:.1f}x the tokens its codec was fitted to, which costs recall; "
                "for the best results, index the collection again into a new index", stacklevel=stacklevel)

    def _write_segment(self, seg_id: int, vectors: list[np.ndarray]) -> dict[str, Any]:
        """Write one segment of this add: codes once the codec exists, float16 vectors until then."""
        doclens = np.array([len(v) for v in vectors], dtype=np.int32)
        flat = np.concatenate(vectors).astype(np.float32)  # (N_tok, D)
        if self.compressed and self._codec is not None:
            arrays = self._with_ivf(self._encode(flat, doclens))
        else:
            arrays = {"vectors": flat.astype(np.float16), "doclens": doclens}
        return write_segment(self.path, seg_id, arrays, len(vectors), int(doclens.sum()))

    @contextlib.contextmanager
    def bulk(self) -> Iterator["Index"]:
        """Several adds that count as one for codec training: a compressed index still held in float16
        trains once, when the block ends, on all of it, not on the first add that reaches
        `train_tokens`. An exception skips that (the next write trains)."""
        self._defer_training = True
        try:
            yield self
        finally:
            self._defer_training = False
        with store.writer_lock(self.path):
            self._refresh(force=True)
            self._train_when_due()
        self._maybe_compact()
        self._warn_if_outgrown(stacklevel=4)

    def _train_when_due(self) -> None:
        """Once a compressed index holds `train_tokens` float16 tokens, fit its codec to a sample of
        all of them (centroids sized for all of them) and encode them. Under the writer lock."""
        if not self.compressed or self._codec is not None:
            return
        held = [(sid, token_ranges(seg.offsets, np.flatnonzero(seg.alive))[0])
                for sid, seg in self._segments.items() if isinstance(seg, ExactSegment)]  # live token indices
        total = sum(len(idx) for _, idx in held)
        if total < self.train_tokens:
            return
        k = int(self.manifest["storage"].get("n_centroids") or default_centroids(total))
        # k-means looks at 32 points per centroid and the residual quantizer at 65,536: sample that many.
        pick = np.sort(np.random.default_rng(0).choice(total, size=min(total, max(32 * k, 1 << 16)), replace=False))
        bounds = np.cumsum([0] + [len(idx) for _, idx in held])
        sample = []
        for (sid, idx), lo, hi in zip(held, bounds[:-1], bounds[1:]):
            mine = pick[(pick >= lo) & (pick < hi)] - lo
            sample.append(np.asarray(self._segments[sid].tokens[idx[mine]], dtype=np.float32))
        self._train_codec(np.concatenate(sample), k, total)
        store.pause_point("train:codec-written")
        self._rewrite([sid for sid, _ in held])

    def _encode(self, flat: np.ndarray, doclens: np.ndarray) -> dict[str, np.ndarray]:
        """Centroid and residual codes for token vectors (N_tok, D), plus float16 copies with rescore."""
        codes, packed = self._codec.encode(np.asarray(flat, dtype=np.float32))
        arrays = {"codes": codes, "residuals": packed, "doclens": doclens}
        if self.manifest["storage"].get("rescore"):
            arrays["vectors"] = np.asarray(flat, dtype=np.float16)
        return arrays

    def _with_ivf(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Add the inverted lists (centroid -> documents) to a coded segment's arrays."""
        if "codes" in arrays:
            arrays["ivf_offsets"], arrays["ivf_docs"] = build_ivf(arrays["codes"], arrays["doclens"], len(self._codec.centroids))
        return arrays

    def _train_codec(self, sample: np.ndarray, n_centroids: int, trained_on: int) -> Codec:
        """Fit the codec to `sample`, drawn from `trained_on` tokens (the manifest records it before any
        segment uses it)."""
        codec = Codec.train(sample, self.manifest["storage"]["nbits"], n_centroids)
        tmp = self.path / ".codec-tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        files = codec.save(tmp)
        shutil.rmtree(self.path / "codec", ignore_errors=True)
        tmp.rename(self.path / "codec")
        store.fsync_dir(self.path)
        self.manifest["codec"] = {"format": Codec.FORMAT, "nbits": codec.nbits, "n_centroids": len(codec.centroids),
                                 "trained_on": trained_on, "files": files}
        store.write_manifest(self.path, self.manifest)
        self._codec = codec
        return codec

    def delete(self, ids: Iterable[str], missing_ok: bool = False) -> int:
        """Delete documents by id (a parent id deletes all its passages); returns how many were removed.

        Unknown ids are an error (and nothing is deleted) unless `missing_ok`.
        """
        if isinstance(ids, str):
            ids = [ids]
        ids = list(ids)
        if not ids:
            raise InputError("no ids to delete")
        with store.writer_lock(self.path):
            targets, unknown = self.catalog.resolve(ids)
            if unknown and not missing_ok:
                shown = ", ".join(repr(u) for u in unknown[:5])
                raise InputError(f"{len(unknown)} id(s) not in the index: {shown}; nothing was deleted")
            if targets:
                self.catalog.delete(targets)
        self._refresh(force=True)
        self._maybe_compact()
        return len(targets)

    def _maybe_compact(self) -> None:
        n_docs, live = self.catalog.counts()
        records = self.catalog.segments()
        stored = sum(r["n_tokens"] for r in records)
        held = self._codec is not None and not all(map(_is_coded, records))  # float16 left from before training
        if held or (stored and 1 - live / stored > COMPACT_AT):
            self.compact()
        if _merge_group(self.catalog.segments()):
            with store.writer_lock(self.path):
                self._refresh(force=True)
                while group := _merge_group(self.catalog.segments()):
                    self._rewrite(group, merge=True)

    def compact(self) -> None:
        """Rewrite segments that hold deleted documents, keeping every id, text and metadata as it was
        (and encode float16 segments a compressed index still holds once its codec is trained)."""
        with store.writer_lock(self.path):
            self._refresh(force=True)
            trained = self._codec is not None
            segs = [(sid, self._segments[sid]) for sid in self._order]
            self._rewrite([sid for sid, seg in segs if not seg.alive.all() or (trained and isinstance(seg, ExactSegment))])

    def _rewrite(self, sids: list[int], merge: bool = False) -> None:
        """Replace segments `sids` by copies of their live documents (all in one segment with `merge`),
        in one commit, under the writer lock. A float16 segment of a compressed index with a trained
        codec is encoded on the way."""
        if not sids:
            return
        records = {r["id"] for r in self.catalog.segments()}
        seg_id = next_segment_id(self.path, set(self._order))
        written = []
        for group in [sids] if merge else [[sid] for sid in sids]:
            parts, docs = [], []
            for sid in group:
                rows = self.catalog.rows_of_segment(sid)
                if rows:
                    parts.append(self._live_arrays(self._segments[sid], np.array([r[2] for r in rows], dtype=np.int64)))
                    docs += [(r[0], r[1], len(docs) + j, r[3], r[4], json.loads(r[5])) for j, r in enumerate(rows)]
            if not parts:
                continue
            arrays = self._with_ivf({name: np.concatenate([p[name] for p in parts]) for name in parts[0]})
            written.append((write_segment(self.path, seg_id, arrays, len(docs), int(arrays["doclens"].sum())), docs))
            seg_id += 1
        store.pause_point("rewrite:segments-written")
        self.catalog.commit(written, drop_segments=sids)
        remove_orphans(self.path, {r[0]["id"] for r in written} | (records - set(sids)))
        self._segments = {k: v for k, v in self._segments.items() if k not in sids}
        self._refresh(force=True)

    def _live_arrays(self, seg: Any, rows: np.ndarray) -> dict[str, np.ndarray]:
        """A segment's arrays for documents `rows` only, without inverted lists."""
        idx, _ = token_ranges(seg.offsets, rows)
        doclens = (seg.offsets[rows + 1] - seg.offsets[rows]).astype(np.int32)
        if isinstance(seg, ExactSegment):
            vectors = np.asarray(seg.tokens[idx])
            if self.compressed and self._codec is not None:
                return self._encode(vectors, doclens)
            return {"vectors": vectors, "doclens": doclens}
        out = {"codes": seg.codes[idx], "residuals": np.asarray(seg.residuals[idx]), "doclens": doclens}
        if seg.vectors is not None:
            out["vectors"] = np.asarray(seg.vectors[idx])
        return out

    # -- searching -----------------------------------------------------------------------------
    def search(
        self, query: str | Sequence[str], k: int = 10, filter: Mapping[str, Any] | None = None
    ) -> list[Hit] | list[list[Hit]]:
        """Top-k documents for a query (a list of Hit), or for each of several queries (a list of lists)."""
        single = isinstance(query, str)
        try:
            queries = [query] if single else list(query)
        except TypeError:  # None, a number: not a list of queries either
            raise InputError(f"query must be a string or a list of strings, not {type(query).__name__}") from None
        if not queries:
            raise InputError("no queries given")
        for q in queries:
            if not isinstance(q, str) or not q.strip():
                raise InputError("a query must be a non-empty string")
        _check_k(k)
        vecs = self.model.encode(queries, is_query=True, show_progress_bar=False)
        results = self._search(stack_queries(vecs), k, filter)
        return results[0] if single else results

    def search_vectors(
        self, queries: np.ndarray | Sequence[np.ndarray], k: int = 10, filter: Mapping[str, Any] | None = None
    ) -> list[Hit] | list[list[Hit]]:
        """Like `search`, for query vectors: one (Q, dim) array gives a list, several give a list of lists."""
        single = isinstance(queries, np.ndarray) and queries.ndim == 2
        qs = [queries] if single else list(queries)
        if not qs or any(np.asarray(q).ndim != 2 or np.asarray(q).shape[0] == 0 for q in qs):
            raise InputError("query vectors must be non-empty (tokens, dim) arrays")
        if any(np.asarray(q).shape[1] != self.manifest["dim"] for q in qs):
            raise InputError(f"query vectors must have dimension {self.manifest['dim']}")
        _check_k(k)
        results = self._search(stack_queries(qs), k, filter)
        return results[0] if single else results

    def _search(self, queries: np.ndarray, k: int, filter: Mapping[str, Any] | None) -> list[list[Hit]]:
        for attempt in range(READ_TRIES):
            self._refresh()
            raw = self._rank(queries, k, filter)
            slots = [(self._order[si], row) for hits in raw for si, row, _ in hits]
            docs = iter(self.catalog.lookup(slots))
            found = [[(next(docs), score) for _, _, score in hits] for hits in raw]
            # A writer's commit since the refresh moved or deleted a hit: rank again on the new state.
            if all(d is not None for hits in found for d, _ in hits):
                break
        # Still moving after READ_TRIES: drop what was deleted meanwhile rather than fail the search.
        return [[Hit(d[0], float(s), d[1], d[2]) for d, s in hits if d is not None] for hits in found]

    def _rank(self, queries: np.ndarray, k: int, filter: Mapping[str, Any] | None) -> list[list[tuple[int, int, float]]]:
        """Top-k (position in self._order, row, score) per query, on the state of the last refresh."""
        segs = [self._segments[s] for s in self._order]
        allowed = None
        if filter is not None:
            slots = self.catalog.filtered_slots(filter)
            allowed = []
            for sid, seg in zip(self._order, segs):
                m = np.zeros(len(seg.alive), dtype=bool)
                m[slots.get(sid, [])] = True
                allowed.append(m)
        # Float16 segments are scanned exactly, coded ones through PLAID; both give (segment, row, score).
        # They mix only in a compressed index between training its codec and encoding what it held.
        fp16 = [i for i, seg in enumerate(segs) if isinstance(seg, ExactSegment)]
        coded = [i for i, seg in enumerate(segs) if not isinstance(seg, ExactSegment)]

        def pick(idx: list[int]) -> list[np.ndarray | None] | None:
            return None if allowed is None else [allowed[i] for i in idx]

        raw: list[list[tuple[int, int, float]]] = [[] for _ in queries]
        if fp16:
            for hits, found in zip(raw, exact_search(queries, [segs[i] for i in fp16], k, pick(fp16))):
                hits += [(fp16[si], row, score) for si, row, score in found]
        if coded:
            for hits, q in zip(raw, queries):
                found = plaid_search(q, self._codec, [segs[i] for i in coded], k, PlaidParams.for_k(k), pick(coded))
                hits += [(coded[si], row, score) for si, row, score in found]
        if fp16 and coded:
            raw = [sorted(hits, key=lambda h: (-h[2], h[0], h[1]))[:k] for hits in raw]
        return raw

    # -- lifecycle -----------------------------------------------------------------------------
    def close(self) -> None:
        self.catalog.close()
        self._segments = {}

    def __enter__(self) -> "Index":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        kind = f"{self.manifest['storage']['nbits']}-bit" if self.compressed else "exact"
        return f"Index({str(self.path)!r}, {kind}, {len(self)} documents)"


def _merge_group(records: list[dict[str, Any]]) -> list[int]:
    """MERGE_FANIN small segments of one kind and size tier (oldest first), or none."""
    tiers: dict[tuple[bool, int], list[int]] = {}
    for r in records:
        if r["n_tokens"] * MERGE_FANIN < SEGMENT_TOKENS:
            tier = int(math.log(max(r["n_tokens"], 1), MERGE_FANIN))
            tiers.setdefault((_is_coded(r), tier), []).append(r["id"])
    return next((sids[:MERGE_FANIN] for sids in tiers.values() if len(sids) >= MERGE_FANIN), [])


def _is_coded(record: Mapping[str, Any]) -> bool:
    """Whether a segment holds codes (compressed) rather than float16 vectors only."""
    return "codes.npy" in record["files"]


def _check_k(k: Any, name: str = "k") -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
        raise InputError(f"{name} must be a positive integer, not {k!r}")
