"""`QdrantStore`: the embedded `Index` API on a Qdrant collection (a server, local mode, or Qdrant Edge).

    >>> store = QdrantStore("qdrant+http://localhost:6333/docs", model)     # creates it, or opens it
    >>> store.add(["Penguins live in the south."], ids=["p1"], metadata=[{"lang": "en"}])
    >>> store.search("¿Dónde viven los pingüinos?", k=5, filter={"lang": "en"})
    [Hit(id='p1', score=27.4, text='Penguins live in the south.', metadata={'lang': 'en'})]

One point per document: its token vectors as a MaxSim multivector (float16, scanned exactly: no
HNSW graph), optionally a dense vector (the normalised mean of its tokens) for a fast first stage,
and a payload {"id", "text", "parent", "metadata", "n_tokens", "_filter"}. Point ids are UUIDv5 of
the user's ids, so adding an id again overwrites the same point and nothing is ever renumbered.
The model's description (as `ColBERT.describe()` gives it) is recorded with the collection and
checked when it is opened, as the embedded index's manifest is.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from lfm_colbert.errors import IndexFormatError, InputError, LfmColbertError
from lfm_colbert.index import Hit
from lfm_colbert.stores import filters
from lfm_colbert.stores.qdrant_backends import TOKENS, ClientBackend, EdgeBackend
from lfm_colbert.stores.qdrant_points import (FORMAT, RETRIES, UPLOAD_BYTES, UPLOAD_POINTS, VERSION, StoreError,
                                              clean_metadata, dense_vector, describe, disk_bytes, one_line, point_id)
from lfm_colbert.stores.qdrant_reads import StoreReads
from lfm_colbert.stores.qdrant_writes import StoreWrites
from lfm_colbert.stores.spec import StoreSpec, parse_spec

__all__ = ["QdrantStore", "StoreError", "clean_metadata", "dense_vector", "point_id"]
COUNT_TOKENS_UP_TO = 100_000  # info() sums token counts point by point only up to this many documents
# What a query must share with the documents it is compared to: the same weights, and the same
# prefixes (queries encoded with another prefix were never trained against these documents).
_CHECKED = ("dim", "variant", "fingerprint")
_CHECKED_SETTINGS = ("query_prefix", "document_prefix")


class QdrantStore(StoreReads, StoreWrites):
    """A Qdrant collection of ColBERT documents, with the embedded `Index`'s methods.

    spec:     "qdrant+http://host:6333/COLLECTION", "qdrant+path:DIR", "qdrant+memory:",
              "qdrant+edge:DIR" (see lfm_colbert.stores.spec), or a parsed StoreSpec.
    model:    a loaded `ColBERT`, a hub id or path (loaded when first needed), None (the model the
              collection was built with; for a new one, the default model), or a dict like
              `ColBERT.describe()` for a collection fed with precomputed vectors only.
    dense:    a new collection also stores a dense prefetch vector per document (default: the
              spec's ?dense=, else no). Fixed at creation.
    prefetch: default number of dense candidates a search ranks by MaxSim (None: every document
              is scored; exact). Needs a collection created with dense vectors.
    client:   an existing `QdrantClient` to use (its TLS, timeouts, ...) instead of the spec's.
    upload_points, upload_bytes, retries: upload batches and tries per batch.
    """

    text_ranges = False  # filters cannot range over text values (lfm_colbert.stores.filters)

    def __init__(
        self,
        spec: str | StoreSpec,
        model: Any = None,
        *,
        create: bool = True,
        dense: bool | None = None,
        prefetch: int | None = None,
        client: Any = None,
        api_key: str | None = None,
        upload_points: int = UPLOAD_POINTS,
        upload_bytes: int = UPLOAD_BYTES,
        retries: int = RETRIES,
        backend: str = "auto",
        device: str | None = None,
    ) -> None:
        self.spec = parse_spec(spec) if isinstance(spec, str) else spec
        self.upload_points, self.upload_bytes, self.retries = upload_points, upload_bytes, max(1, retries)
        self._placement = {"backend": backend, "device": device}
        self._model_obj: Any = None
        self._model_spec: str | None = None
        self._bulk = False
        self._dirty = False
        with self._guard("opening"):
            if self.spec.kind == "edge":
                self._b: Any = EdgeBackend(self.spec.path)
            elif client is not None:
                self._b = ClientBackend(client, self.spec.collection, remote=self.spec.kind == "server")
            else:
                self._b = ClientBackend.connect(self.spec, api_key)
            exists = self._b.exists()
        dense = self.spec.dense if dense is None else dense
        try:  # a refused open releases the collection (an Edge shard stays locked while open)
            if exists:
                self._open(dense)
            elif not create:
                raise IndexFormatError(f"no lfm-colbert collection at {self.spec}")
            else:
                self._create(model, bool(dense))
            self._attach(model)
            self.prefetch = self.spec.prefetch if prefetch is None else prefetch
            if self.prefetch is not None:
                self._check_prefetch(self.prefetch)
        except BaseException:
            self._b.close()
            raise

    # -- opening and the model -------------------------------------------------------------------
    @contextlib.contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        """Errors of the Qdrant libraries (connection refused, a bad request) as one clear StoreError."""
        try:
            yield
        except LfmColbertError:
            raise
        except Exception as exc:
            raise StoreError(f"{what} {self.spec} failed: {one_line(exc)}") from exc

    def _open(self, dense: bool | None) -> None:
        with self._guard("reading"):
            manifest = self._b.manifest()
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise IndexFormatError(f"{self.spec} exists but was not created by lfm-colbert (it records no "
                                   "lfm_colbert description); give a new collection name")
        if manifest.get("version", 0) > VERSION:
            raise IndexFormatError(f"{self.spec} was written by a newer lfm-colbert (format {manifest['version']}); upgrade")
        if dense is not None and bool(dense) != bool(manifest.get("dense")):
            have = "stores" if manifest.get("dense") else "does not store"
            raise InputError(f"{self.spec} {have} dense prefetch vectors; dense is chosen at creation")
        self.manifest = manifest
        with self._guard("opening"):
            if isinstance(self._b, EdgeBackend):
                self._b.ensure_shard()
            layout = self._b.layout()
        tok = layout.get(TOKENS) or {}
        if tok.get("size") != manifest["dim"] or tok.get("multivector") != "max_sim":
            raise IndexFormatError(f"{self.spec}: its '{TOKENS}' vector is not a {manifest['dim']}-d MaxSim multivector ({tok})")
        if tok.get("hnsw_m") not in (0, None):
            warnings.warn(f"{self.spec}: the '{TOKENS}' multivector has an HNSW graph (m={tok['hnsw_m']}): building it is "
                          "slow and makes MaxSim approximate; lfm-colbert creates it with m=0", stacklevel=3)

    def _create(self, model: Any, dense: bool) -> None:
        if model is None or isinstance(model, (str, Path)):
            from lfm_colbert.encoder import ColBERT

            model = ColBERT(None if model is None else str(model), **self._placement)
        if not isinstance(model, Mapping):
            self._model_obj = model
        desc = describe(model)
        self.manifest = {
            "format": FORMAT,
            "version": VERSION,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "model": desc,
            "dim": desc["dim"],
            "dense": dense,
        }
        with self._guard("creating"):
            self._b.create(desc["dim"], dense, self.manifest)

    def _attach(self, model: Any) -> None:
        if model is None:
            return
        if isinstance(model, (str, Path)):
            self._model_spec = str(model)
            return
        self._check_model(describe(model))
        if not isinstance(model, Mapping):
            self._model_obj = model

    def _check_model(self, desc: Mapping[str, Any]) -> None:
        have = self.manifest["model"]
        pairs = [(k, have.get(k), desc.get(k)) for k in _CHECKED]
        pairs += [(k, (have.get("settings") or {}).get(k), (desc.get("settings") or {}).get(k)) for k in _CHECKED_SETTINGS]
        for key, a, b in pairs:
            if a is not None and b is not None and a != b:
                raise IndexFormatError(
                    f"{self.spec} was built with model {have.get('model_id')!r} ({key} {a!r}); the model given is "
                    f"{desc.get('model_id')!r} ({key} {b!r}). Search a collection with the model that built it."
                )

    @property
    def model(self) -> Any:
        """The encoder, loaded on first use (the one given, else the one recorded with the collection)."""
        if self._model_obj is None:
            spec = self._model_spec or self.manifest["model"].get("model_id")
            if not spec:
                raise InputError(f"{self.spec} holds precomputed vectors only; pass model= to encode text")
            from lfm_colbert.encoder import ColBERT

            model = ColBERT(spec, dtype=self.manifest["model"].get("dtype"), **self._placement)
            self._check_model(describe(model))
            self._model_obj = model
        return self._model_obj

    @property
    def dense(self) -> bool:
        return bool(self.manifest.get("dense"))

    def _check_prefetch(self, n: Any) -> int:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise InputError(f"prefetch must be a positive number of candidates, not {n!r}")
        if not self.dense:
            raise InputError(f"{self.spec} stores no dense vectors to prefetch with; create it with dense=True (?dense=1)")
        return int(n)

    # -- searching -------------------------------------------------------------------------------
    def search(self, query: str | Sequence[str], k: int = 10, filter: Mapping[str, Any] | None = None, *,
               prefetch: int | None = None, mode: str = "semantic", alpha: float | None = None) -> list[Hit] | list[list[Hit]]:
        """Top-k documents by MaxSim for a query (a list of Hit), or for each of several (a list of lists).
        `prefetch`: rank only the N documents nearest by dense vector (default: the store's). `mode`
        and `alpha` exist for the `Index` API: lexical and hybrid search need an embedded index."""
        if mode != "semantic" or alpha is not None:
            raise InputError(f"--mode {mode} (keyword search) needs an embedded index: a Qdrant store keeps no "
                             "keyword index; search it with --mode semantic")
        single = isinstance(query, str)
        queries = [query] if single else list(query) if isinstance(query, (list, tuple)) else None
        if not queries or any(not isinstance(q, str) or not q.strip() for q in queries):
            raise InputError("a query must be a non-empty string (or a non-empty list of them)")
        vecs = self.model.encode(queries, is_query=True, show_progress_bar=False)
        results = self._search(vecs, k, filter, prefetch)
        return results[0] if single else results

    def search_vectors(self, queries: np.ndarray | Sequence[np.ndarray], k: int = 10, filter: Mapping[str, Any] | None = None,
                       *, prefetch: int | None = None) -> list[Hit] | list[list[Hit]]:
        """Like `search`, for query vectors: one (Q, dim) array gives a list, several give a list of lists."""
        single = isinstance(queries, np.ndarray) and queries.ndim == 2
        qs = [np.asarray(q, dtype=np.float32) for q in ([queries] if single else list(queries))]
        if not qs or any(q.ndim != 2 or q.shape[0] == 0 or q.shape[1] != self.manifest["dim"] for q in qs):
            raise InputError(f"query vectors must be non-empty (tokens, {self.manifest['dim']}) arrays")
        results = self._search(qs, k, filter, prefetch)
        return results[0] if single else results

    def _search(self, queries: Sequence[np.ndarray], k: int, filter: Any, prefetch: int | None) -> list[list[Hit]]:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise InputError(f"k must be a positive integer, not {k!r}")
        n = self.prefetch if prefetch is None else self._check_prefetch(prefetch)
        flt = filters.translate(filter, self._b.conditions)
        out = []
        with self._guard("searching"):
            for q in queries:
                pre = (dense_vector(q), max(int(n), int(k))) if n else None
                out.append([Hit(p["id"], s, p.get("text"), p.get("metadata") or {}) for _, s, p in self._b.query(q, int(k), flt, pre)])
        return out

    def rerank(self, query: str | np.ndarray, ids: Sequence[str], k: int | None = None) -> list[Hit]:
        """Score stored documents `ids` (candidates from another retriever) for `query` by MaxSim; best first."""
        ids = list(ids)
        if not ids:
            raise InputError("no ids to rerank")
        present = self._present([point_id(i) for i in ids])
        missing = [i for i in ids if point_id(i) not in present]
        if missing:
            raise InputError(f"{len(missing)} id(s) not in the store: {', '.join(map(repr, missing[:5]))}")
        q = query if isinstance(query, np.ndarray) else self.model.encode([query], is_query=True, show_progress_bar=False)[0]
        c = self._b.conditions
        flt = c.all_of([c.has_ids([point_id(i) for i in ids])])
        with self._guard("reranking"):
            found = self._b.query(np.asarray(q, dtype=np.float32), len(ids), flt, None)
        hits = [Hit(p["id"], s, p.get("text"), p.get("metadata") or {}) for _, s, p in found]
        return hits if k is None else hits[:k]

    # -- description and lifecycle ---------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        """Counts and settings, JSON-able; the keys `Index.info()` has, where they apply."""
        n = len(self)
        tokens = sum(int(p.get("n_tokens", 0)) for _, p, _ in self._scan(fields=["n_tokens"])) if n <= COUNT_TOKENS_UP_TO else None
        size = None
        if self.spec.path and Path(self.spec.path).is_dir():
            size = sum(disk_bytes(p) for p in Path(self.spec.path).rglob("*") if p.is_file())
        with self._guard("describing"):
            layout, segments = self._b.layout(), self._b.segments()
        return {
            "path": str(self.spec), "store": "qdrant", "engine": self._b.kind, "collection": self.spec.collection,
            "format_version": self.manifest.get("version"), "created": self.manifest.get("created"),
            "model": self.manifest["model"],
            "storage": {"kind": "qdrant", "nbits": None, "vectors": layout, "dense": self.dense, "prefetch": self.prefetch},
            "n_centroids": None, "train_tokens": None, "codec_trained_on_tokens": None, "codec_growth": None,
            "float16_segments": None, "documents": n, "tokens": tokens, "segments": segments, "deleted_fraction": 0.0,
            "bytes_on_disk": size, "bytes_per_token_vectors": None,
            "bytes_per_token_total": round(size / tokens, 2) if size and tokens else None,
        }

    def close(self) -> None:
        if getattr(self, "_b", None) is None:
            return
        with self._guard("closing"):
            try:
                self._optimize()
                self._b.flush()
            finally:
                self._b.close()
        self._b = None

    def __enter__(self) -> "QdrantStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"QdrantStore({str(self.spec)!r})"
