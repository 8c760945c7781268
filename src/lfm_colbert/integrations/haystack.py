"""Haystack 2+: a retriever component and a ranker component for `Pipeline`s.

    >>> from haystack import Pipeline
    >>> from lfm_colbert.integrations.haystack import LfmColbertRetriever, LfmColbertRanker
    >>> pipe = Pipeline()
    >>> pipe.add_component("retriever", LfmColbertRetriever(index="my-index", k=20))
    >>> pipe.add_component("ranker", LfmColbertRanker(index="my-index", k=5))
    >>> pipe.connect("retriever.documents", "ranker.documents")
    >>> pipe.run({"retriever": {"query": q}, "ranker": {"query": q}})["ranker"]["documents"]

`index=` is an `Index`, an index directory or the URL of `lfm-colbert serve`. Filters are Haystack's
({"field": "meta.lang", "operator": "in", "value": ["en", "es"]}, == and in, joined by AND) or
lfm-colbert's own dict ({"lang": ["en", "es"]}). Both components serialise with the pipeline
(index path or URL; the API key as an environment variable). Needs `pip install 'lfm-colbert[haystack]'`.
"""

# No `from __future__ import annotations` here: Haystack reads the run() annotations as types.
import dataclasses
from typing import Any, Optional, Union

from lfm_colbert.errors import InputError
from lfm_colbert.integrations._common import IndexHandle, Scorer, _check_k, open_index

try:
    from haystack import Document, component, default_from_dict, default_to_dict
    from haystack.document_stores.types import FilterPolicy
    from haystack.utils import Secret
except ModuleNotFoundError as _exc:
    from lfm_colbert.integrations._common import missing_extra

    raise missing_extra(_exc, "haystack", "lfm_colbert.integrations.haystack") from None

__all__ = ["LfmColbertRetriever", "LfmColbertRanker", "to_filter"]

_API_KEY = Secret.from_env_var("LFM_COLBERT_API_KEY", strict=False)


def to_filter(filters: Optional[dict[str, Any]]) -> Optional[dict[str, Any]]:
    """A Haystack filter as an lfm-colbert filter ({"key": value or [any, of]}, keys ANDed); a dict
    without "operator" is taken as an lfm-colbert filter already."""
    if not filters:
        return None
    if not isinstance(filters, dict):
        raise InputError(f"filters must be a dict, not {type(filters).__name__}")
    if "operator" not in filters:
        return dict(filters)
    out: dict[str, Any] = {}
    _collect(filters, out)
    return out


def _collect(f: dict[str, Any], out: dict[str, Any]) -> None:
    op = f.get("operator")
    if "conditions" in f:
        if op != "AND":
            raise InputError(f"lfm-colbert filters join conditions with AND, not {op!r}")
        for c in f["conditions"]:
            _collect(c, out)
        return
    field, value = f.get("field"), f.get("value")
    if op not in ("==", "in") or not isinstance(field, str):
        raise InputError(f"filter {f!r}: lfm-colbert filters support '==' and 'in' on a field, joined by AND")
    if not field.startswith("meta."):
        raise InputError(f"filter field {field!r}: lfm-colbert filters metadata fields, written 'meta.KEY'")
    key = field[len("meta."):]
    if key in out:
        raise InputError(f"filter on {field!r} given twice; use one 'in' condition for any of several values")
    if op == "in" and not isinstance(value, list):
        raise InputError(f"filter on {field!r}: 'in' takes a list of values")
    out[key] = value


def _merge(policy: FilterPolicy, init: Optional[dict[str, Any]], runtime: Optional[dict[str, Any]]) -> Optional[dict[str, Any]]:
    init, runtime = to_filter(init), to_filter(runtime)
    if policy == FilterPolicy.MERGE and init and runtime:
        return {**init, **runtime}  # a key given at run time replaces the same key given at init
    return runtime or init


def _location(index: Any) -> Any:
    """What to_dict records for `index=`: a path or URL (an `Index` object by its path)."""
    path = getattr(index, "path", None)
    return str(path) if path is not None else (index if isinstance(index, str) else str(index))


def _secret_value(api_key: Optional[Secret]) -> Optional[str]:
    return api_key.resolve_value() if api_key is not None else None


@component
class LfmColbertRetriever:
    """Late-interaction (MaxSim) search over an lfm-colbert index.

    index:   an `Index`, an index directory, or an http(s):// URL of `lfm-colbert serve`.
    k:       documents per query (run(top_k=...) overrides it).
    filters: applied to every query; run(filters=...) replaces them (filter_policy=MERGE: adds to them).
    model:   for an index directory: a hub id or checkpoint directory to search it with
             (default: the one that built it).
    api_key: for a URL (default: the LFM_COLBERT_API_KEY environment variable).
    """

    def __init__(
        self,
        index: Any,
        k: int = 10,
        filters: Optional[dict[str, Any]] = None,
        filter_policy: Union[str, FilterPolicy] = FilterPolicy.REPLACE,
        model: Optional[str] = None,
        api_key: Optional[Secret] = _API_KEY,
    ) -> None:
        self.index = index
        self.k = _check_k(k)
        self.filters = filters
        to_filter(filters)  # a filter lfm-colbert cannot apply is an error now, not at the first query
        self.filter_policy = FilterPolicy.from_str(filter_policy) if isinstance(filter_policy, str) else filter_policy
        self.model = model
        self.api_key = api_key
        self._handle: Optional[IndexHandle] = None

    def warm_up(self) -> None:
        """Open the index (and load the model), once; a pipeline calls this before its first run."""
        if self._handle is None:
            self._handle = open_index(self.index, model=self.model, api_key=_secret_value(self.api_key))
            self._handle.call("model")

    def to_dict(self) -> dict[str, Any]:
        return default_to_dict(self, index=_location(self.index), k=self.k, filters=self.filters,
                               filter_policy=self.filter_policy.value, model=self.model,
                               api_key=self.api_key.to_dict() if self.api_key is not None else None)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LfmColbertRetriever":
        return default_from_dict(cls, data)

    def _args(self, filters: Optional[dict[str, Any]], top_k: Optional[int]) -> tuple:
        self.warm_up()
        return self.k if top_k is None else top_k, _merge(self.filter_policy, self.filters, filters)

    @staticmethod
    def _documents(hits: list[Any]) -> dict[str, list[Document]]:
        return {"documents": [Document(id=h.id, content=h.text, meta=dict(h.metadata or {}), score=float(h.score)) for h in hits]}

    @component.output_types(documents=list[Document])
    def run(self, query: str, filters: Optional[dict[str, Any]] = None, top_k: Optional[int] = None) -> dict[str, list[Document]]:
        """The top_k documents for `query`, best first, each with its MaxSim score."""
        k, f = self._args(filters, top_k)
        return self._documents(self._handle.call("search", query, k, f))

    @component.output_types(documents=list[Document])
    async def run_async(
        self, query: str, filters: Optional[dict[str, Any]] = None, top_k: Optional[int] = None
    ) -> dict[str, list[Document]]:
        k, f = self._args(filters, top_k)
        return self._documents(await self._handle.acall("search", query, k, f))


@component
class LfmColbertRanker:
    """Reorder documents by MaxSim against the query, best first, as `lfm_colbert.rerank` does; each
    document's score becomes its MaxSim score.

    model: a hub id or checkpoint directory (default: $LFM_COLBERT_MODEL, else LFM2.5);
    index: or an `Index` / index directory (use its model) or the URL of `lfm-colbert serve` (its /rerank).
    k:     keep the best k (default: all, reordered; run(top_k=...) overrides it).
    """

    def __init__(
        self,
        model: Any = None,
        index: Any = None,
        k: Optional[int] = None,
        api_key: Optional[Secret] = _API_KEY,
    ) -> None:
        if index is not None and model is not None:
            raise InputError("give the ranker index= (to use its model or server) or model=, not both")
        self.model, self.index, self.api_key = model, index, api_key
        self.k = _check_k(k, optional=True)
        self._scorer: Optional[Scorer] = None

    def warm_up(self) -> None:
        if self._scorer is None:
            self._scorer = Scorer(index=self.index, model=self.model, api_key=_secret_value(self.api_key))

    def to_dict(self) -> dict[str, Any]:
        model = self.model if self.model is None or isinstance(self.model, str) else getattr(self.model, "model_id", None)
        return default_to_dict(self, model=model, index=None if self.index is None else _location(self.index), k=self.k,
                               api_key=self.api_key.to_dict() if self.api_key is not None else None)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LfmColbertRanker":
        return default_from_dict(cls, data)

    @staticmethod
    def _check(documents: list[Document]) -> list[str]:
        missing = [d.id for d in documents if not d.content]
        if missing:
            raise InputError(f"{len(missing)} document(s) have no text to rank: {', '.join(map(repr, missing[:5]))}")
        return [d.content for d in documents]

    @staticmethod
    def _ranked(documents: list[Document], ranked: list[Any]) -> dict[str, list[Document]]:
        return {"documents": [dataclasses.replace(documents[r.index], score=float(r.score)) for r in ranked]}

    @component.output_types(documents=list[Document])
    def run(self, query: str, documents: list[Document], top_k: Optional[int] = None) -> dict[str, list[Document]]:
        """`documents` best first by MaxSim against `query` (the best top_k)."""
        self.warm_up()
        texts = self._check(documents)
        return self._ranked(documents, self._scorer.rerank(query, texts, self.k if top_k is None else top_k))

    @component.output_types(documents=list[Document])
    async def run_async(self, query: str, documents: list[Document], top_k: Optional[int] = None) -> dict[str, list[Document]]:
        self.warm_up()
        texts = self._check(documents)
        return self._ranked(documents, await self._scorer.arerank(query, texts, self.k if top_k is None else top_k))
