"""The model and the index behind the service, and the one place that decides which thread touches them.

Threads (while `Index` objects are not shared between threads, each thread has its own):

- the inference thread (`InferenceWorker`) runs every forward pass and every search, on its own
  reader `Index`; requests reach it through a queue and are batched there;
- the writer thread runs adds and deletes one at a time on its own writer `Index`, and has the
  inference thread encode the documents; a write is acknowledged once `Index` has committed it,
  and every search that starts afterwards sees it;
- document reads (`get`, `list`, `info`) run in the event loop's thread pool, each thread on a
  catalog-only `Index` of its own.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TypeVar

import numpy as np
from anyio import to_thread
from filelock import Timeout

from lfm_colbert.errors import IndexFormatError, InputError
from lfm_colbert.explain import Explanation
from lfm_colbert.index import Document, Hit, Index, Ranked
from lfm_colbert.server.batching import DocumentsJob, EncodeJob, InferenceWorker, Job, RerankJob, SearchJob
from lfm_colbert.server.errors import ApiError, retry_later
from lfm_colbert.server.settings import Batching

logger = logging.getLogger("lfm_colbert.server")
T = TypeVar("T")

# As Index.add encodes: chunks of this many documents, each sorted by length into batches of 32.
_ADD_CHUNK = 256
_ADD_BATCH = 32


class Engine:
    """Search, rerank, encode and document updates over one model and at most one index directory.

    model: a loaded `ColBERT`, a hub id / local path, or None (the index's own model, else the
           default model). index: a directory (created empty when missing, unless read-only) or None
           for a rerank / encode-only service.
    """

    def __init__(
        self,
        index: str | Path | None,
        model: Any = None,
        *,
        read_only: bool = False,
        batching: Batching | None = None,
        backend: str = "auto",
        device: str | None = None,
        lock_wait_s: float = 10.0,
        retry_after_s: int = 1,
    ) -> None:
        self.index_path = Path(index) if index is not None else None
        self.read_only = read_only
        self.batching = batching or Batching()
        self.lock_wait_s = lock_wait_s
        self.retry_after_s = retry_after_s
        self._model_arg = model
        self._placement = {"backend": backend, "device": device}
        self.worker = InferenceWorker(self._open, self.batching)
        self._writes = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lfm-writer")
        self._writer_index: Index | None = None
        self._local = threading.local()
        self._draining = False
        self._started = False
        self._description: dict[str, Any] | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        """Load the model and open the index on the inference thread; /health says when it is ready."""
        if not self._started:
            self._started = True
            self.worker.start()

    def _open(self) -> tuple[Any, Index | None]:
        path, model = self.index_path, self._model_arg
        exists = path is not None and (path / "manifest.json").is_file()
        if path is not None and not exists and self.read_only:
            raise IndexFormatError(f"no lfm-colbert index at {path}; --read-only serves an existing index")
        if model is None or isinstance(model, (str, Path)):
            if exists:  # the index's model, at the precision its documents were encoded
                opener = Index(path, None if model is None else str(model), create=False, **self._placement)
                model = opener.model
                opener.close()
            else:
                from lfm_colbert.encoder import ColBERT

                model = ColBERT(None if model is None else str(model), **self._placement)
        if path is not None and not exists:
            Index(path, model).close()  # a new, empty index: refuses a directory that holds anything else
            logger.warning("created a new empty index at %s", path)
        reader = Index(path, model, create=False) if path is not None else None
        return model, reader

    @property
    def state(self) -> str:
        if self._draining:
            return "draining"
        if not self.worker.ready.is_set():
            return "loading"
        return "failed" if self.worker.error is not None else "ready"

    @property
    def error(self) -> str | None:
        exc = self.worker.error
        return None if exc is None else (str(exc) or type(exc).__name__)

    @property
    def model(self) -> Any:
        return self.worker.model

    @property
    def model_description(self) -> dict[str, Any]:
        """`ColBERT.describe()` of the loaded model (computed once: it hashes part of the weights)."""
        if self._description is None:
            self._description = dict(self.model.describe())
        return self._description

    def require_ready(self) -> None:
        state = self.state
        if state == "loading":
            raise retry_later(503, "the model is still loading; retry shortly", "loading", self.retry_after_s)
        if state == "draining":
            raise retry_later(503, "the server is shutting down", "draining", self.retry_after_s)
        if state == "failed":
            raise ApiError(503, f"the server could not load its model or index: {self.error}", "failed")

    def require_index(self) -> Path:
        if self.index_path is None:
            raise ApiError(404, "this server has no index (start it with `lfm-colbert serve DIR`); "
                                "/rerank and /encode work without one", "no_index")
        return self.index_path

    def close(self) -> None:
        """Drain: finish the writes accepted so far (committed, never half-written), then the queued
        searches, then stop. Blocking; call it from a thread."""
        self._draining = True
        if self._writer_index is not None:
            self._writes.submit(self._close_writer).result()
        self._writes.shutdown(wait=True)
        if self._started:
            self.worker.stop()

    def _close_writer(self) -> None:
        if self._writer_index is not None:
            self._writer_index.close()
            self._writer_index = None

    # -- reading -------------------------------------------------------------------------------
    async def _submit(self, job: Job) -> Any:
        self.require_ready()
        try:
            future = self.worker.submit(job)
        except RuntimeError:
            raise retry_later(503, "the server is shutting down", "draining", self.retry_after_s) from None
        return await asyncio.wrap_future(future)

    async def search(
        self, queries: list[str], k: int, filter: Mapping[str, Any] | None, explain: bool,
        mode: str = "semantic", alpha: float | None = None,
    ) -> list[list[tuple[Hit, Explanation | None]]]:
        self.require_index()
        try:
            return await self._submit(SearchJob(queries, k, dict(filter) if filter is not None else None, explain,
                                                mode, None if alpha is None else float(alpha)))
        except LookupError:
            self.require_index()
            raise

    async def rerank(self, query: str, documents: list[str], k: int | None, explain: bool) -> list[tuple[Ranked, Explanation | None]]:
        return await self._submit(RerankJob(query, documents, k, explain))

    async def encode(self, texts: list[str], is_query: bool) -> list[np.ndarray]:
        return await self._submit(EncodeJob(texts, is_query))

    def _catalog(self) -> Index:
        """This thread's own catalog-only Index (no model: reading documents needs none)."""
        index = getattr(self._local, "index", None)
        if index is None:
            index = self._local.index = Index(self.require_index(), create=False)
        return index

    async def _read(self, fn: Callable[[Index], T]) -> T:
        self.require_ready()
        self.require_index()
        return await to_thread.run_sync(lambda: fn(self._catalog()))

    async def get(self, ids: Sequence[str]) -> list[Document | None]:
        return await self._read(lambda index: index.get(list(ids)))

    async def list(self, limit: int, after: str | None, filter: Mapping[str, Any] | None = None) -> list[Document]:
        return await self._read(lambda index: index.list(filter=filter, limit=limit, after=after))

    async def describe(self) -> tuple[dict[str, Any] | None, dict[str, int]]:
        """(index.info(), metadata keys), or (None, {}) without an index."""
        self.require_ready()
        if self.index_path is None:
            return None, {}

        def read(index: Index) -> tuple[dict[str, Any], dict[str, int]]:
            for attempt in range(5):
                try:
                    return index.info(), index.metadata_keys()
                except FileNotFoundError:  # a commit removed a file while info() listed them: look again
                    if attempt == 4:
                        raise
            raise AssertionError("unreachable")

        return await self._read(read)

    # -- writing -------------------------------------------------------------------------------
    async def _write(self, fn: Callable[[], T]) -> T:
        self.require_ready()
        self.require_index()
        if self.read_only:
            raise ApiError(403, "this server is read-only (--read-only): it accepts no writes", "read_only")
        try:
            future = self._writes.submit(fn)
        except RuntimeError:
            raise retry_later(503, "the server is shutting down", "draining", self.retry_after_s) from None
        try:
            return await asyncio.shield(asyncio.wrap_future(future))
        except asyncio.CancelledError:
            # Shutdown ran out of time (--drain-timeout). A write not started yet is dropped, unacknowledged;
            # one under way runs to its commit whatever happens, so answer with its outcome, not a 500.
            if future.cancel():
                raise
            return await asyncio.wrap_future(future)

    def _writer(self) -> Index:
        if self._writer_index is None:
            self._writer_index = Index(self.require_index(), self.model, create=False)
        return self._writer_index

    async def add(
        self, texts: list[str], ids: list[str | None], metadata: list[dict[str, Any] | None], upsert: bool
    ) -> tuple[list[str], list[str]]:
        """Encode and commit documents; returns (ids, ids of documents truncated to the model's length)."""
        given = [i for i in ids if i is not None]
        if len(set(given)) != len(given):
            dup = next(i for i in given if given.count(i) > 1)
            raise InputError(f"id {dup!r} appears more than once in this request")
        full_ids = [i if i is not None else uuid.uuid4().hex for i in ids]
        return await self._write(lambda: self._add(texts, full_ids, metadata, upsert))

    def _add(self, texts: list[str], ids: list[str], metadata: list[dict[str, Any] | None], upsert: bool) -> tuple[list[str], list[str]]:
        index = self._writer()
        if not upsert:  # say so before spending time encoding
            self._refuse_existing([i for i, doc in zip(ids, index.get(ids)) if doc is not None])
        vectors, truncated = self._encode_documents(texts)

        def commit() -> None:
            try:
                index.add_vectors(vectors, ids, texts, metadata, upsert=upsert)
            except InputError as exc:
                if "already in the index" in str(exc):  # another process added them since the check above
                    raise ApiError(409, str(exc), "conflict") from None
                raise

        self._with_lock(commit, done=lambda: index.unchanged(ids, texts, metadata) == set(ids))
        return ids, [i for i, cut in zip(ids, truncated) if cut]

    @staticmethod
    def _refuse_existing(existing: list[str]) -> None:
        if existing:
            shown = ", ".join(map(repr, existing[:5]))
            raise ApiError(409, f"{len(existing)} id(s) already in the index ({shown}); send \"upsert\": true to "
                                "replace them", "conflict")

    def _encode_documents(self, texts: list[str]) -> tuple[list[np.ndarray], list[bool]]:
        """Vectors as `Index.add` would encode them (same chunks and batches), one batch per turn of
        the inference thread, so searches keep running meanwhile."""
        jobs: list[tuple[np.ndarray, DocumentsJob]] = []
        for start in range(0, len(texts), _ADD_CHUNK):
            chunk = texts[start : start + _ADD_CHUNK]
            order = np.argsort([-len(t) for t in chunk]) + start  # the call ColBERT.encode makes
            for b in range(0, len(order), _ADD_BATCH):
                idx = order[b : b + _ADD_BATCH]
                job = DocumentsJob([texts[i] for i in idx])
                self.worker.submit(job)
                jobs.append((idx, job))
        vectors: list[np.ndarray | None] = [None] * len(texts)
        truncated = [False] * len(texts)
        for idx, job in jobs:
            vecs, cut = job.future.result()
            for i, v, c in zip(idx, vecs, cut):
                vectors[i], truncated[i] = v, c
        return vectors, truncated  # type: ignore[return-value]

    async def delete(self, ids: list[str], missing_ok: bool) -> int:
        def run() -> int:
            index = self._writer()
            try:
                return self._with_lock(lambda: index.delete(ids, missing_ok=missing_ok))
            except InputError as exc:  # unknown ids: nothing was deleted
                raise ApiError(404, str(exc), "not_found") from None

        return await self._write(run)

    def _with_lock(self, fn: Callable[[], T], done: Callable[[], bool] | None = None) -> T:
        """Run a write, waiting up to lock_wait_s while another process holds the index's writer lock."""
        deadline = time.monotonic() + self.lock_wait_s
        while True:
            try:
                return fn()
            except IndexFormatError as exc:
                if not isinstance(exc.__cause__, Timeout):
                    raise
                if done is not None and done():  # committed; only the tidying after it met the lock
                    return None  # type: ignore[return-value]
                if time.monotonic() >= deadline:
                    raise retry_later(503, f"the index is being written by another process: {exc}", "index_busy",
                                      self.retry_after_s) from None
                time.sleep(0.05)
