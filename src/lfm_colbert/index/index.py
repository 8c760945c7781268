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

The work is split by concern: lfm_colbert.index.directory (creating and opening), .reader (the
committed state a search sees, search, reading documents back), .writer (add, upsert, delete),
.maintenance (merging, compaction, codec training), .engine (the calls into the search kernels).
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from lfm_colbert.errors import IndexBusyError, IndexClosedError, IndexFormatError, InputError
from lfm_colbert.index import directory, hybrid, store
from lfm_colbert.index.maintenance import COMPACT_AT, MERGE_FANIN, REFIT_GROWTH, SEGMENT_TOKENS  # noqa: F401
from lfm_colbert.index.checks import as_list, check_id, check_k, check_rows, check_text, query_array
from lfm_colbert.index.lexical import Lexicon
from lfm_colbert.index.metadata import Catalog
from lfm_colbert.index.reader import Document, Hit, Reader
from lfm_colbert.index.writer import Writer
from lfm_colbert.scoring import stack_queries
from lfm_colbert.tokenization import check_texts

__all__ = ["Document", "Hit", "Index"]

# A compressed index keeps float16 vectors until an add (or a `bulk()` block) leaves it holding this
# many tokens, then fits its codec to a sample of all of them. Centroids fitted to a first handful of
# documents would serve every later add: 3,000 clustered documents added after a first one of 87
# tokens searched with recall 0.27, not 0.98.
TRAIN_TOKENS = 1 << 18


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
        if not isinstance(path, (str, os.PathLike)) or not str(path):
            raise InputError(f"path must be a directory path, not {path!r}")
        self.path = Path(path)
        check_text(str(self.path), "the index path")
        self.verify = verify
        self._closed = False
        self._model_obj: Any = None
        self._model_spec: str | None = None
        self._model_lock = threading.Lock()
        self._created: tuple[str, bool] | None = None  # (index id, made the directory) when this object created it
        if (backend != "auto" or device is not None) and model is not None and not directory.is_model_spec(model):
            raise InputError("backend and device apply to a model the index loads; this one is loaded already")
        self._placement = {"backend": backend, "device": device}
        directory.check_new_options(compress, train_tokens, n_centroids)
        manifest = directory.existing_manifest(self.path)
        if manifest is None and not create:
            raise IndexFormatError(f"no lfm-colbert index at {self.path}")
        if manifest is None:
            if (rescore or train_tokens is not None) and compress is None:
                what = "rescore" if rescore else "train_tokens"
                raise InputError(f"{what} applies to compressed indexes (compress=2 or 4); exact search already is exact")
            if model is None or directory.is_model_spec(model):
                model = directory.load_model(None if model is None else str(model), **self._placement)
            if not isinstance(model, Mapping):
                self._model_obj = model
            storage = ({"kind": "plaid", "nbits": compress, "n_centroids": n_centroids, "rescore": bool(rescore),
                        "train_tokens": train_tokens or TRAIN_TOKENS} if compress else {"kind": "float16", "nbits": None})
            manifest, created, made = directory.create(self.path, directory.describe(model), storage)
            if created:
                self._created = (manifest["index_id"], made)
                compress = rescore = train_tokens = None  # as created
        directory.check_options(self.path, manifest, compress, bool(rescore), train_tokens)
        self.catalog = Catalog(self.path / store.CATALOG, manifest.get("index_id"))
        self._reader = Reader(self.path, self.catalog, manifest, verify)
        self._writer = Writer(self.path, self.catalog, self._reader)
        self._lexicon = Lexicon(self.catalog)
        self._attach(model)

    # -- model -----------------------------------------------------------------------------------
    def _attach(self, model: Any) -> None:
        if model is None:
            return
        if directory.is_model_spec(model):
            self._model_spec = str(model)  # loaded and checked on first use
            return
        directory.check_model(self.path, self.manifest, directory.describe(model))
        if not isinstance(model, Mapping):
            self._model_obj = model

    @property
    def manifest(self) -> dict[str, Any]:
        return self._reader.manifest

    @property
    def model(self) -> Any:
        """The encoder, loaded on first use: the one given, else $LFM_COLBERT_MODEL, else the one recorded."""
        if self._model_obj is None:
            with self._model_lock:  # threads searching at once load it once
                if self._model_obj is None:
                    self._model_obj = directory.load_recorded_model(self.path, self.manifest, self._model_spec, self._placement)
        return self._model_obj

    @property
    def compressed(self) -> bool:
        return bool(self.manifest["storage"].get("nbits"))

    @property
    def train_tokens(self) -> int | None:
        """Tokens a compressed index holds before its codec is trained (format 1 indexes: the first add)."""
        return self.manifest["storage"].get("train_tokens", 1) if self.compressed else None

    def _open(self) -> None:
        if self._closed:
            raise IndexClosedError(f"the index at {self.path} is closed")

    # -- reading ---------------------------------------------------------------------------------
    def __len__(self) -> int:
        self._open()
        return self.catalog.counts()[0]

    def __contains__(self, doc_id: object) -> bool:
        self._open()
        if not isinstance(doc_id, str) or not doc_id:
            return False
        check_id(doc_id)
        return bool(self.catalog.existing([doc_id]))

    def get(self, ids: str | Sequence[str]) -> Document | None | list[Document | None]:
        """The stored document with this id (None if there is none), or a list for a list of ids."""
        self._open()
        single = isinstance(ids, str)
        docs = self._reader.get([ids] if single else as_list(ids, "ids"))
        return docs[0] if single else docs

    def list(self, filter: Mapping[str, Any] | None = None, limit: int | None = None, after: str | None = None) -> list[Document]:
        """Documents in id order, those matching `filter` only, at most `limit`, starting after id `after`
        (pass the last id of one page to get the next)."""
        self._open()
        if limit is not None:
            limit = check_k(limit, "limit")
        return self._reader.list(filter, limit, after)

    def __iter__(self) -> Iterator[Document]:
        """Every document of one committed state, in id order, read a page at a time."""
        self._open()
        return self._reader.iterate()

    def vectors(self, ids: Sequence[str]) -> list[np.ndarray]:
        """The stored token vectors of documents `ids`, each (T_i, dim) float32, read from one committed
        state: as stored for an exact index (float16 precision), decoded from the codes for a compressed
        one (approximate, unless it keeps float16 vectors with rescore). For moving a collection to
        another store without encoding it again."""
        self._open()
        return self._reader.vectors([ids] if isinstance(ids, str) else as_list(ids, "ids"))

    def metadata_keys(self) -> dict[str, int]:
        """{metadata key: number of documents that have it}, for discovering what filters can use."""
        self._open()
        return self.catalog.metadata_keys()

    def info(self) -> dict[str, Any]:
        """Counts, sizes and settings of one committed state, JSON-able."""
        self._open()
        return self._reader.info()

    def verify_files(self) -> None:
        """Check every file of one committed state against its recorded checksum and structure, and every
        catalog row; raise an IndexFormatError naming the first bad file."""
        self._open()
        self._reader.verify_files()

    # -- searching -----------------------------------------------------------------------------
    def search(
        self, query: str | Sequence[str], k: int = 10, filter: Mapping[str, Any] | None = None,
        *, mode: str = "semantic", alpha: float | None = None,
    ) -> list[Hit] | list[list[Hit]]:
        """Top-k documents for a query (a list of Hit), or for each of several queries (a list of lists).
        mode: "semantic" (MaxSim), "lexical" (BM25) or "hybrid" (both, fused by reciprocal rank fusion, or
        with `alpha` in [0, 1] by alpha * semantic + (1 - alpha) * lexical normalised scores; see .hybrid)."""
        self._open()
        single = isinstance(query, str)
        if not single and (query is None or not hasattr(query, "__iter__") or isinstance(query, (bytes, Mapping))):
            raise InputError(f"query must be a string or a list of strings, not {type(query).__name__}")
        queries = [query] if single else list(query)
        if not queries:
            raise InputError("no queries given")
        if any(not isinstance(q, str) or not q.strip() for q in queries):
            raise InputError("a query must be a non-empty string")
        check_texts(queries)  # text the tokenizer can take
        k = check_k(k)
        alpha = hybrid.check(mode, alpha)
        encode = lambda qs: stack_queries(self.model.encode(qs, is_query=True, show_progress_bar=False))  # noqa: E731
        if mode != "semantic":
            results = hybrid.search(self._reader, self._lexicon, queries, k, filter, mode, alpha, encode)
        else:
            results = self._reader.search(encode(queries), k, filter)
        return results[0] if single else results

    def search_vectors(
        self, queries: np.ndarray | Sequence[np.ndarray], k: int = 10, filter: Mapping[str, Any] | None = None,
        *, texts: Sequence[str] | None = None, mode: str = "semantic", alpha: float | None = None,
    ) -> list[Hit] | list[list[Hit]]:
        """Like `search`, for query vectors: one (Q, dim) array gives a list, several give a list of lists.
        mode="hybrid" also needs each query's text (`texts`, one per query) for its keyword side."""
        self._open()
        single = isinstance(queries, np.ndarray) and queries.ndim == 2
        if not single and not isinstance(queries, (np.ndarray, list, tuple)):
            raise InputError(f"query vectors must be a (tokens, dim) array or a list of them, not {type(queries).__name__}")
        qs = [queries] if single else as_list(queries, "query vectors")
        if not qs:
            raise InputError("no query vectors given")
        qs = [query_array(q, self.manifest["dim"]) for q in qs]
        k = check_k(k)
        alpha = hybrid.check(mode, alpha)
        if mode == "semantic":
            results = self._reader.search(stack_queries(qs), k, filter)
        else:
            texts = [texts] if isinstance(texts, str) else as_list(texts, "texts")
            if len(texts) != len(qs) or any(not isinstance(t, str) or not t.strip() for t in texts):
                raise InputError(f"mode={mode!r} needs one non-empty query text per query vector (texts=)")
            results = hybrid.search(self._reader, self._lexicon, texts, k, filter, mode, alpha,
                                    lambda _: stack_queries(qs))
        return results[0] if single else results

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
        self._open()
        if isinstance(documents, str):
            raise InputError("add() takes a list of documents, not one string")
        docs = as_list(documents, "documents")
        docs = check_texts(docs) if docs else []  # one error naming every empty or non-string text
        check_rows(len(docs), ids, docs, metadata, parents)  # before the model loads or encodes anything
        from lfm_colbert.encoder import stream_documents

        model = self.model
        return self._writer.add(stream_documents(model, docs, batch_size, progress_bar, show_progress), len(docs), ids, docs,
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
        self._open()
        vectors = as_list(vectors, "vectors")
        return self._writer.add(iter(vectors), len(vectors), ids, texts, metadata, parents, upsert)

    def upsert(self, documents: Sequence[str], ids: Sequence[str], metadata: Any = None, **kw: Any) -> list[str]:
        """Add documents, replacing any with the same ids."""
        return self.add(documents, ids, metadata, upsert=True, **kw)

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
        self._open()
        return self._writer.unchanged(as_list(ids, "ids"), texts, metadata, parents)

    def delete(self, ids: Iterable[str], missing_ok: bool = False) -> int:
        """Delete documents by id (a parent id deletes all its passages); returns how many were removed.

        Unknown ids are an error (and nothing is deleted) unless `missing_ok`.
        """
        self._open()
        ids = [ids] if isinstance(ids, str) else as_list(ids, "ids")
        if not ids:
            raise InputError("no ids to delete")
        return self._writer.delete(ids, missing_ok)

    def rebuild_lexical(self) -> int:
        """Rebuild the keyword index (lexical / hybrid search) from the stored texts; returns their number."""
        self._open()
        return self._writer.rebuild_lexical()

    @contextlib.contextmanager
    def bulk(self) -> Iterator["Index"]:
        """Several adds (in this thread) that count as one for codec training: a compressed index still
        held in float16 trains once, when the block ends, on all of it, not on the first add that
        reaches `train_tokens`. An exception skips that (the next write trains)."""
        self._open()
        self._writer.enter_bulk()
        try:
            yield self
        finally:
            self._writer.exit_bulk()
        if not self._writer.defer_training:  # the outermost block
            try:
                self._writer.end_bulk()
            except IndexBusyError as exc:  # every add of the block is committed: train with the next write
                warnings.warn(f"{exc}; the codec is trained by the next write", stacklevel=3)

    def set_pool_factor(self, pool_factor: int) -> None:
        """Record that this empty index's documents are pooled by `pool_factor` (lfm_colbert.pooling;
        the manifest's "pool_factor"), before its first add."""
        self._open()
        self._writer.set_pool_factor(int(pool_factor))

    def compact(self) -> None:
        """Rewrite segments that hold deleted documents, keeping every id, text and metadata as it was
        (and encode float16 segments a compressed index still holds once its codec is trained)."""
        self._open()
        self._writer.compact()

    def _discard_created(self) -> bool:
        """Remove the index this object created, if nothing was ever written to it (for a command that
        failed before its first add). True if it is gone; an index that holds anything stays."""
        if self._created is None:
            return False
        index_id, made = self._created
        self.close()
        return directory.discard(self.path, index_id, made)

    # -- lifecycle -----------------------------------------------------------------------------
    def close(self) -> None:
        """Release the catalog's connections and the mapped files; any later call is an error."""
        self._closed = True
        self.catalog.close()
        self._reader.drop()

    def __enter__(self) -> "Index":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        kind = f"{self.manifest['storage']['nbits']}-bit" if self.compressed else "exact"
        return f"Index({str(self.path)!r}, {kind}, {'closed' if self._closed else f'{len(self)} documents'})"

