"""What the framework adapters share: opening what `index=` names, and calling it from any thread.

`IndexHandle` is the one place that turns `index=` into something to search:
  - an `Index`, or a path to an index directory: searched in this process (embedded);
  - an "http://" or "https://" URL: `lfm_colbert.client.RemoteIndex`, over `lfm-colbert serve`;
  - any other object with the Index methods (`search`, `get`, `rerank`, ...): used as it is.

A local `Index` keeps an SQLite connection that only the thread that opened it may use, while
frameworks call retrievers from thread pools (LangChain's `batch`, MCP's and Haystack's workers) and
event loops. So the handle opens its own `Index` on one worker thread and runs every local call
there: any thread can call it, async code awaits it without blocking its loop, and writes are
serialised. The model object is shared, not loaded twice, and adapters given the same index
directory share one handle (`open_index`): one model in memory for a retriever and its reranker.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Mapping, Sequence

from lfm_colbert.errors import InputError

URL_SCHEMES = ("http://", "https://")


def missing_extra(exc: ModuleNotFoundError, extra: str, what: str) -> ModuleNotFoundError:
    """A one-line error naming the extra that installs a missing framework (keeps `.name` for the CLI)."""
    package = (exc.name or extra).split(".")[0]
    err = ModuleNotFoundError(f"{what} needs the optional package {package!r}: pip install 'lfm-colbert[{extra}]'")
    err.name = package
    return err


def is_url(index: Any) -> bool:
    return isinstance(index, str) and index.strip().lower().startswith(URL_SCHEMES)


def _remote_index(url: str, api_key: str | None) -> Any:
    try:
        from lfm_colbert.client import RemoteIndex
    except ModuleNotFoundError as exc:
        if exc.name == "lfm_colbert.client":
            raise InputError(f"{url} is a URL, and remote mode needs lfm_colbert.client, which this build lacks") from None
        raise missing_extra(exc, "serve", "remote mode (index= a URL)") from None
    return RemoteIndex(url.strip(), api_key=api_key)


def _is_local(ix: Any) -> bool:
    from lfm_colbert.index import Index

    return isinstance(ix, Index)


def _check_k(k: Any, name: str = "k", optional: bool = False) -> int | None:
    if k is None and optional:
        return None
    if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
        raise InputError(f"{name} must be a positive integer, not {k!r}")
    return k


class IndexHandle:
    """An `Index` (embedded), a `RemoteIndex` (URL) or an Index-like object, callable from any thread.

    index: an `Index`, an index directory, an http(s):// URL of `lfm-colbert serve`, or an object
           with the Index methods. model: for an index directory, the model to search it with
           (default: the one it was built with). api_key: for a URL (default: the client's own,
           e.g. $LFM_COLBERT_API_KEY).
    """

    def __init__(self, index: Any, *, model: Any = None, api_key: str | None = None) -> None:
        from lfm_colbert.index import Index

        self._pool: ThreadPoolExecutor | None = None
        self._local: Any = None
        if isinstance(index, IndexHandle):
            raise InputError("pass the index itself, not another adapter's handle")
        if is_url(index):
            self.location: str | None = index.strip()
            self._target = _remote_index(index, api_key)
            return
        if isinstance(index, Index):
            self.location = str(index.path)
            given = index

            def open_local() -> Any:  # the same directory and model, a connection of this thread's own
                return Index(given.path, given.model, create=False, verify=given.verify)
        elif isinstance(index, (str, os.PathLike)):
            self.location = os.fspath(index)

            def open_local() -> Any:
                return Index(index, model, create=False)
        elif all(callable(getattr(index, m, None)) for m in ("search", "get")):
            self.location = getattr(index, "url", None)
            self._target = index
            return
        else:
            raise InputError(
                "index= takes an Index, an index directory, or the http(s):// URL of `lfm-colbert serve`, "
                f"not {type(index).__name__}"
            )
        self._target = None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="lfm-colbert-index")
        weakref.finalize(self, self._pool.shutdown, wait=False)
        self._local = self._pool.submit(open_local).result()  # a wrong path fails here, not at the first query

    @property
    def remote(self) -> bool:
        """True when calls go to another process (a URL or an Index-like object), not an Index here."""
        return self._local is None

    # -- running calls ---------------------------------------------------------------------------
    def _bind(self, method: str, *args: Any, **kwargs: Any) -> Callable[[], Any]:
        def call() -> Any:
            target = self._local if self._local is not None else self._target
            return getattr(self, f"_{method}")(target, *args, **kwargs)

        return call

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Run `method` (one of the operations below) here (remote) or on the index's thread (local)."""
        fn = self._bind(method, *args, **kwargs)
        return fn() if self._pool is None else self._pool.submit(fn).result()

    async def acall(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """`call` for async code: the event loop keeps running while the index works."""
        fn = self._bind(method, *args, **kwargs)
        if self._pool is None:  # a remote call blocks on the network: in the loop's default executor
            return await asyncio.get_running_loop().run_in_executor(None, fn)
        return await asyncio.wrap_future(self._pool.submit(fn))

    # -- operations (run with the Index, RemoteIndex or Index-like object as `ix`) --------------------
    @staticmethod
    def _search(ix: Any, query: str, k: int, filter: Mapping[str, Any] | None) -> list[Any]:
        if not isinstance(query, str):
            raise InputError(f"a query must be a non-empty string, not {type(query).__name__}")
        return list(ix.search(query, k=_check_k(k), filter=filter or None))

    @staticmethod
    def _rerank(ix: Any, query: str, texts: Sequence[str], k: int | None) -> list[Any]:
        k = _check_k(k, optional=True)
        if not texts:
            return []
        if _is_local(ix):  # no server to ask: the index's own model
            from lfm_colbert.index import rerank

            return rerank(query, list(texts), model=ix.model, k=k)
        return list(ix.rerank(query, list(texts), k=k))

    @staticmethod
    def _get(ix: Any, ids: Sequence[str]) -> list[Any]:
        return list(ix.get(list(ids))) if ids else []

    @staticmethod
    def _upsert(ix: Any, texts: Sequence[str], ids: Sequence[str], metadata: Sequence[Mapping[str, Any] | None]) -> list[str]:
        return list(ix.upsert(list(texts), list(ids), list(metadata)))

    @staticmethod
    def _add(ix: Any, texts: Sequence[str], ids: Sequence[str], metadata: Sequence[Mapping[str, Any] | None]) -> list[str]:
        return list(ix.add(list(texts), list(ids), list(metadata)))

    @staticmethod
    def _delete(ix: Any, ids: Sequence[str], missing_ok: bool) -> list[str]:
        """Delete `ids`; returns those that were there. Unknown ids are an error unless `missing_ok`."""
        ids = list(ids)
        present = list(dict.fromkeys(i for i, d in zip(ids, ix.get(ids)) if d is not None))
        if not missing_ok and len(set(present)) != len(set(ids)):
            unknown = [i for i in ids if i not in set(present)]
            raise InputError(f"{len(unknown)} id(s) not in the index: {', '.join(map(repr, unknown[:5]))}; nothing was deleted")
        if present:
            ix.delete(present)
        return present

    @staticmethod
    def _metadata_keys(ix: Any) -> dict[str, int]:
        keys = getattr(ix, "metadata_keys", None)
        if callable(keys):
            return dict(keys())
        info = ix.info() if callable(getattr(ix, "info", None)) else {}
        if isinstance(info, Mapping) and isinstance(info.get("metadata_keys"), Mapping):
            return dict(info["metadata_keys"])
        raise InputError("this index does not list its metadata keys (a server that predates metadata_keys)")

    @staticmethod
    def _model(ix: Any) -> Any:
        """Load the encoder now (local only), so the first query does not pay for it."""
        return ix.model if _is_local(ix) else None

    def __repr__(self) -> str:
        kind = "remote" if self.remote else "local"
        return f"IndexHandle({self.location!r}, {kind})"


_SHARED: "weakref.WeakValueDictionary[tuple[str, str | None], IndexHandle]" = weakref.WeakValueDictionary()
_SHARED_LOCK = threading.Lock()


def open_index(index: Any, *, model: Any = None, api_key: str | None = None) -> IndexHandle:
    """`IndexHandle(index, ...)`, one per index directory (and model spec) while any adapter holds it:
    a retriever and a reranker given the same path share one model in memory, not a copy each."""
    if isinstance(index, (str, os.PathLike)) and not is_url(index) and (model is None or isinstance(model, (str, os.PathLike))):
        key = (os.path.realpath(index), None if model is None else os.fspath(model))
        with _SHARED_LOCK:
            handle = _SHARED.get(key)
            if handle is None:
                handle = IndexHandle(index, model=model)
                _SHARED[key] = handle
            return handle
    return IndexHandle(index, model=model, api_key=api_key)


class Scorer:
    """What rerankers score with: the model of `index=` (local), the server's /rerank (URL), or `model=`
    (a loaded ColBERT, a hub id or checkpoint directory; None: $LFM_COLBERT_MODEL, else the default)."""

    def __init__(self, *, index: Any = None, model: Any = None, api_key: str | None = None) -> None:
        if index is not None and model is not None:
            raise InputError("give a reranker index= (to use its model or server) or model=, not both")
        self.handle = open_index(index, api_key=api_key) if index is not None else None
        self._model = model
        self._lock = threading.Lock()

    def _encoder(self) -> Any:
        with self._lock:  # load once, even when the first calls arrive together
            if self._model is None or isinstance(self._model, (str, os.PathLike)):
                from lfm_colbert.encoder import ColBERT

                self._model = ColBERT(model=None if self._model is None else os.fspath(self._model))
            return self._model

    def rerank(self, query: str, texts: Sequence[str], k: int | None = None) -> list[Any]:
        """`lfm_colbert.rerank(query, texts, k=k)`: [Ranked(index, score, text)], best first."""
        if self.handle is not None:
            return self.handle.call("rerank", query, texts, k)
        from lfm_colbert.index import rerank

        k = _check_k(k, optional=True)
        return rerank(query, list(texts), model=self._encoder(), k=k) if texts else []

    async def arerank(self, query: str, texts: Sequence[str], k: int | None = None) -> list[Any]:
        if self.handle is not None:
            return await self.handle.acall("rerank", query, texts, k)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, functools.partial(self.rerank, query, texts, k))

    def describe(self) -> dict[str, Any]:
        """JSON-able constructor arguments (for frameworks that serialise components)."""
        if self.handle is not None:
            return {"index": self.handle.location}
        return {"model": self._model if isinstance(self._model, str) else getattr(self._model, "model_id", None)}
