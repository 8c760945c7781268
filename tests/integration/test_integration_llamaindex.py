"""LlamaIndex: a real RetrieverQueryEngine (no LLM: response_mode="no_text") with our retriever and
reranker on the sample corpus returns the ids and order of Index.search then rerank()."""

from __future__ import annotations

import asyncio

import pytest
from llama_index.core import Settings
from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import NodeWithScore, TextNode
from llama_index.core.vector_stores.types import FilterCondition, FilterOperator, MetadataFilter, MetadataFilters

from lfm_colbert.errors import InputError
from lfm_colbert.index import rerank
from lfm_colbert.integrations.llamaindex import LfmColbertReranker, LfmColbertRetriever, to_filter


@pytest.fixture
def no_llm(monkeypatch):
    """The query engine's synthesizer asks Settings for an LLM even when it writes no text: a mock, no network."""
    monkeypatch.setattr(Settings, "_llm", MockLLM())


def _same(nodes, hits):
    assert [n.node.node_id for n in nodes] == [h.id for h in hits]
    assert [n.node.get_content() for n in nodes] == [h.text for h in hits]
    assert [n.node.metadata for n in nodes] == [h.metadata for h in hits]
    assert [n.score for n in nodes] == pytest.approx([h.score for h in hits], rel=1e-5)


def test_query_engine_with_reranker_matches_search_then_rerank(no_llm, sample_index, sample_queries, causal_model):
    retriever = LfmColbertRetriever(index=sample_index.path, k=8)
    engine = RetrieverQueryEngine.from_args(
        retriever, node_postprocessors=[LfmColbertReranker(model=causal_model, k=3)], response_mode="no_text"
    )
    for q in sample_queries[:4]:
        candidates = sample_index.search(q, k=8)
        _same(retriever.retrieve(q), candidates)
        want = rerank(q, [h.text for h in candidates], model=causal_model, k=3)
        response = engine.query(q)
        assert [n.node.node_id for n in response.source_nodes] == [candidates[r.index].id for r in want]
        assert [n.score for n in response.source_nodes] == pytest.approx([r.score for r in want], rel=1e-5)


def test_async_and_filters(sample_index, sample_queries):
    filters = MetadataFilters(filters=[MetadataFilter(key="lang", value=["es", "pt"], operator=FilterOperator.IN),
                                       MetadataFilter(key="topic", value="volcanoes")])
    retriever = LfmColbertRetriever(index=sample_index, k=5, filters=filters)
    nodes = asyncio.run(retriever.aretrieve(sample_queries[1]))
    _same(nodes, sample_index.search(sample_queries[1], k=5, filter={"lang": ["es", "pt"], "topic": "volcanoes"}))
    assert nodes and {n.node.metadata["lang"] for n in nodes} <= {"es", "pt"}
    ranked = asyncio.run(LfmColbertReranker(index=sample_index).apostprocess_nodes(nodes, query_str="volcán"))
    want = rerank("volcán", [n.node.get_content() for n in nodes], model=sample_index.model)
    assert [n.node.node_id for n in ranked] == [nodes[r.index].node.node_id for r in want]


def test_filters_it_cannot_express_are_refused():
    assert to_filter({"lang": "en"}) == {"lang": "en"}
    assert to_filter(MetadataFilters(filters=[MetadataFilter(key="tags", value="cold", operator=FilterOperator.CONTAINS)])) == {"tags": "cold"}
    for bad in (
        MetadataFilters(filters=[MetadataFilter(key="year", value=2020, operator=FilterOperator.GT)]),
        MetadataFilters(filters=[MetadataFilter(key="a", value=1), MetadataFilter(key="b", value=2)], condition=FilterCondition.OR),
        MetadataFilters(filters=[MetadataFilter(key="a", value=1), MetadataFilter(key="a", value=2)]),
    ):
        with pytest.raises(InputError):
            to_filter(bad)


def test_reranker_needs_the_query(causal_model):
    nodes = [NodeWithScore(node=TextNode(text="x"), score=1.0)]
    with pytest.raises(InputError, match="needs the query"):
        LfmColbertReranker(model=causal_model).postprocess_nodes(nodes)


def test_remote_url_goes_through_the_client(fake_remote, sample_index, sample_queries):
    retriever = LfmColbertRetriever(index="http://127.0.0.1:9", k=4)
    _same(retriever.retrieve(sample_queries[3]), sample_index.search(sample_queries[3], k=4))
    nodes = retriever.retrieve(sample_queries[3])
    ranked = LfmColbertReranker(index="http://127.0.0.1:9", k=2).postprocess_nodes(nodes, query_str=sample_queries[3])
    assert len(ranked) == 2 and fake_remote[1].calls == [("rerank", sample_queries[3], 4, 2)]
    assert [c[0] for c in fake_remote[0].calls] == ["search", "search"]
