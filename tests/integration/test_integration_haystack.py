"""Haystack: a real Pipeline (our retriever, then our ranker) on the sample corpus returns the ids and
order of Index.search then rerank(), and survives serialisation to YAML and back."""

from __future__ import annotations

import asyncio

import pytest
from haystack import Document, Pipeline

from lfm_colbert.errors import InputError
from lfm_colbert.index import rerank
from lfm_colbert.integrations.haystack import LfmColbertRanker, LfmColbertRetriever, to_filter


def _pipeline(index, ranker_model):
    pipe = Pipeline()
    pipe.add_component("retriever", LfmColbertRetriever(index=index, k=8))
    pipe.add_component("ranker", LfmColbertRanker(model=ranker_model, k=3))
    pipe.connect("retriever.documents", "ranker.documents")
    return pipe


def _expected(index, query, model, filter=None):
    candidates = index.search(query, k=8, filter=filter)
    return [(candidates[r.index].id, r.score) for r in rerank(query, [h.text for h in candidates], model=model, k=3)]


def test_pipeline_retriever_then_ranker(sample_index, sample_queries, causal_model):
    pipe = _pipeline(str(sample_index.path), causal_model)
    for q in sample_queries[:4]:
        out = pipe.run({"retriever": {"query": q}, "ranker": {"query": q}}, include_outputs_from={"retriever"})
        hits = sample_index.search(q, k=8)
        assert [(d.id, d.content, d.meta) for d in out["retriever"]["documents"]] == [(h.id, h.text, h.metadata) for h in hits]
        want = _expected(sample_index, q, causal_model)
        got = out["ranker"]["documents"]
        assert [d.id for d in got] == [i for i, _ in want]
        assert [d.score for d in got] == pytest.approx([s for _, s in want], rel=1e-5)


def test_pipeline_survives_yaml(sample_index, sample_queries, tiny_causal_checkpoint):
    pipe = _pipeline(str(sample_index.path), str(tiny_causal_checkpoint))  # paths: serialisable as they are
    # Haystack 3 loads only allow-listed modules; ours is not allow-listed on import, since a pipeline file
    # could otherwise point a retriever (and $LFM_COLBERT_API_KEY) at any URL.
    again = Pipeline.loads(pipe.dumps(), allowed_modules=["lfm_colbert.integrations.haystack"])
    assert again.get_component("retriever").index == str(sample_index.path)
    q = sample_queries[5]
    data = {"retriever": {"query": q, "filters": {"field": "meta.lang", "operator": "in", "value": ["ko", "zh"]}},
            "ranker": {"query": q}}
    first, second = pipe.run(data)["ranker"]["documents"], again.run(data)["ranker"]["documents"]
    assert [(d.id, d.score) for d in second] == [(d.id, d.score) for d in first]
    assert first and {d.meta["lang"] for d in first} <= {"ko", "zh"}


def test_async_pipeline(sample_index, sample_queries, causal_model):
    pipe = _pipeline(sample_index, causal_model)  # Haystack 3: Pipeline.run_async (AsyncPipeline in 2.x)
    q = sample_queries[6]
    out = asyncio.run(pipe.run_async({"retriever": {"query": q, "top_k": 5}, "ranker": {"query": q, "top_k": 2}}))
    candidates = sample_index.search(q, k=5)
    want = rerank(q, [h.text for h in candidates], model=causal_model, k=2)
    assert [d.id for d in out["ranker"]["documents"]] == [candidates[r.index].id for r in want]


def test_filters():
    assert to_filter({"lang": ["en", "es"]}) == {"lang": ["en", "es"]}
    assert to_filter({"operator": "AND", "conditions": [{"field": "meta.lang", "operator": "==", "value": "en"},
                                                        {"field": "meta.topic", "operator": "in", "value": ["a", "b"]}]}) == {
        "lang": "en", "topic": ["a", "b"]}
    for bad in ({"operator": "OR", "conditions": []}, {"field": "meta.year", "operator": ">", "value": 3},
                {"field": "content", "operator": "==", "value": "x"}, {"field": "meta.a", "operator": "in", "value": "x"}):
        with pytest.raises(InputError):
            to_filter(bad)
    with pytest.raises(InputError):
        LfmColbertRetriever(index="unused", filters={"field": "meta.x", "operator": "not in", "value": [1]})


def test_filter_policy_merge(sample_index, sample_queries):
    retriever = LfmColbertRetriever(index=sample_index, k=6, filters={"topic": "coffee"}, filter_policy="merge")
    q = sample_queries[0]
    docs = retriever.run(q, filters={"field": "meta.lang", "operator": "in", "value": ["ja", "ko", "zh"]})["documents"]
    assert [d.id for d in docs] == [h.id for h in sample_index.search(q, k=6, filter={"topic": "coffee", "lang": ["ja", "ko", "zh"]})]


def test_ranker_errors(causal_model):
    with pytest.raises(InputError, match="no text"):
        LfmColbertRanker(model=causal_model).run("q", [Document(content="fine"), Document(content=None)])
    assert LfmColbertRanker(model=causal_model).run("q", [])["documents"] == []


def test_remote_url_goes_through_the_client(fake_remote, sample_index, sample_queries):
    q = sample_queries[4]
    pipe = Pipeline()
    pipe.add_component("retriever", LfmColbertRetriever(index="http://127.0.0.1:9", k=5))
    pipe.add_component("ranker", LfmColbertRanker(index="http://127.0.0.1:9", k=2))
    pipe.connect("retriever.documents", "ranker.documents")
    out = pipe.run({"retriever": {"query": q}, "ranker": {"query": q}})
    candidates = sample_index.search(q, k=5)
    want = rerank(q, [h.text for h in candidates], model=sample_index.model, k=2)
    assert [d.id for d in out["ranker"]["documents"]] == [candidates[r.index].id for r in want]
    assert sorted(c.calls[0][0] for c in fake_remote) == ["rerank", "search"]
