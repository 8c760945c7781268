"""LlamaIndex: a retriever over an lfm-colbert index, and a reranking node postprocessor.

    >>> from lfm_colbert.integrations.llamaindex import LfmColbertRetriever, LfmColbertReranker
    >>> retriever = LfmColbertRetriever(index="my-index", k=5)
    >>> retriever.retrieve("¿Dónde viven los pingüinos?")        # [NodeWithScore(node=TextNode(id_=...), score=...)]
    >>> engine = RetrieverQueryEngine.from_args(retriever, node_postprocessors=[LfmColbertReranker(index="my-index", k=3)])

`index=` is an `Index`, an index directory or the URL of `lfm-colbert serve`. Filters are
`MetadataFilters` with ==, in, any or contains, joined by AND, or lfm-colbert's own dict
({"lang": ["en", "es"]}). Needs `pip install 'lfm-colbert[llamaindex]'`.
"""

from __future__ import annotations

from typing import Any

from lfm_colbert.errors import InputError
from lfm_colbert.integrations._common import Scorer, _check_k, open_index

try:
    from llama_index.core.bridge.pydantic import Field, PrivateAttr
    from llama_index.core.postprocessor.types import BaseNodePostprocessor
    from llama_index.core.retrievers import BaseRetriever
    from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle, TextNode
    from llama_index.core.vector_stores.types import FilterCondition, FilterOperator, MetadataFilters
except ModuleNotFoundError as _exc:
    from lfm_colbert.integrations._common import missing_extra

    raise missing_extra(_exc, "llamaindex", "lfm_colbert.integrations.llamaindex") from None

__all__ = ["LfmColbertRetriever", "LfmColbertReranker", "to_filter"]

# Operators lfm-colbert's filter can express: a key equal to a value or to any of several; for a
# list-valued key (tags), an element equal to one of them.
_ANY_OF = {FilterOperator.EQ, FilterOperator.IN, FilterOperator.ANY, FilterOperator.CONTAINS}


def to_filter(filters: MetadataFilters | dict[str, Any] | None) -> dict[str, Any] | None:
    """LlamaIndex `MetadataFilters` as an lfm-colbert filter: {"key": value or [any, of]}, keys ANDed."""
    if filters is None or isinstance(filters, dict):
        return filters or None
    if not isinstance(filters, MetadataFilters):
        raise InputError(f"filters must be MetadataFilters or a dict, not {type(filters).__name__}")
    if filters.condition not in (None, FilterCondition.AND) and len(filters.filters) > 1:
        raise InputError(f"lfm-colbert filters join keys with AND, not {filters.condition.value.upper()}")
    out: dict[str, Any] = {}
    for f in filters.filters:
        if isinstance(f, MetadataFilters):
            raise InputError("lfm-colbert filters cannot nest MetadataFilters")
        operator = getattr(f, "operator", FilterOperator.EQ)  # ExactMatchFilter has none: ==
        if operator not in _ANY_OF:
            raise InputError(
                f"filter on {f.key!r}: operator {operator.value!r} is not supported (==, in, any, contains are)"
            )
        if f.key in out:
            raise InputError(f"filter on {f.key!r} given twice; give one filter per key, with a list for any of several")
        out[f.key] = list(f.value) if isinstance(f.value, (list, tuple)) else f.value
    return out or None


def _node(hit: Any) -> NodeWithScore:
    return NodeWithScore(node=TextNode(id_=hit.id, text=hit.text or "", metadata=dict(hit.metadata or {})), score=float(hit.score))


class LfmColbertRetriever(BaseRetriever):
    """Late-interaction (MaxSim) search over an lfm-colbert index, as a LlamaIndex retriever.

    index:   an `Index`, an index directory, or an http(s):// URL of `lfm-colbert serve`.
    k:       nodes per query.
    filters: `MetadataFilters` (==, in, any, contains; AND) or an lfm-colbert filter dict.
    model:   for an index directory: the model to search it with (default: the one that built it).
    api_key: for a URL (default: $LFM_COLBERT_API_KEY).
    """

    def __init__(
        self,
        index: Any,
        k: int = 10,
        filters: MetadataFilters | dict[str, Any] | None = None,
        *,
        model: Any = None,
        api_key: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.k = _check_k(k)
        self.filters = to_filter(filters)  # checked now, not at the first query
        self.handle = open_index(index, model=model, api_key=api_key)
        super().__init__(**kwargs)

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return [_node(h) for h in self.handle.call("search", query_bundle.query_str, self.k, self.filters)]

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return [_node(h) for h in await self.handle.acall("search", query_bundle.query_str, self.k, self.filters)]


class LfmColbertReranker(BaseNodePostprocessor):
    """Reorder retrieved nodes by MaxSim against the query, best first, as `lfm_colbert.rerank` does
    (on each node's text without metadata); the node's score becomes its MaxSim score.

    model: a loaded `ColBERT`, a hub id or checkpoint directory (default: $LFM_COLBERT_MODEL, else LFM2.5);
    index: or an `Index` / index directory (use its model) or the URL of `lfm-colbert serve` (its /rerank).
    k:     keep the best k (default: all, reordered).
    """

    k: int | None = Field(default=None, description="Nodes to keep, best first (None: all).")
    _scorer: Scorer = PrivateAttr()

    def __init__(self, model: Any = None, index: Any = None, k: int | None = None, *, api_key: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(k=_check_k(k, optional=True), **kwargs)
        self._scorer = Scorer(index=index, model=model, api_key=api_key)

    @classmethod
    def class_name(cls) -> str:
        return "LfmColbertReranker"

    def _texts(self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None) -> tuple[str, list[str]]:
        if query_bundle is None:
            raise InputError("reranking needs the query (postprocess_nodes(nodes, query_str=...))")
        return query_bundle.query_str, [n.node.get_content(metadata_mode=MetadataMode.NONE) for n in nodes]

    @staticmethod
    def _ranked(nodes: list[NodeWithScore], ranked: list[Any]) -> list[NodeWithScore]:
        return [NodeWithScore(node=nodes[r.index].node, score=float(r.score)) for r in ranked]

    def _postprocess_nodes(self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None) -> list[NodeWithScore]:
        query, texts = self._texts(nodes, query_bundle)
        return self._ranked(nodes, self._scorer.rerank(query, texts, self.k))

    async def _apostprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        query, texts = self._texts(nodes, query_bundle)
        return self._ranked(nodes, await self._scorer.arerank(query, texts, self.k))
