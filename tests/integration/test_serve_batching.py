"""Micro-batching: requests that arrive together share forward passes and scans, and every result is
the one the library gives for that request alone."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from serve_helpers import BlockingModel, corpus_index, sample_corpus, serving  # noqa: F401

from lfm_colbert import ColBERT, Index, rerank
from lfm_colbert.server import Batching

QUERIES = ["¿Dónde viven los pingüinos?", "ペンギンはどうやって泳ぐの？", "Wie bereitet man einen Espresso zu?",
           "volcanic eruptions", "café", "البطريق", "火山爆发是怎么发生的？", "solar panels on the roof",
           "커피는 어디에서 재배되나요?", "pinguins na praia"]


def test_a_batch_of_queries_encodes_each_exactly_as_alone(tiny_model):
    alone = [tiny_model.encode([q], is_query=True)[0] for q in QUERIES]
    together = tiny_model.encode(QUERIES, is_query=True, batch_size=len(QUERIES))
    for a, t in zip(alone, together):
        np.testing.assert_array_equal(a, t)


def _burst(client, model: BlockingModel, requests: list[tuple[str, dict]]) -> list:
    """Hold the inference thread on a first request, queue `requests` behind it, then let them all run
    (so they are served as one batch); returns their responses in order."""
    model.release.clear()
    model.entered.clear()
    out: dict[int, object] = {}

    def send(i: int, path: str, body: dict) -> None:
        out[i] = client.post(path, json=body)

    first = threading.Thread(target=send, args=(-1, "/search", {"query": "hold"}))
    first.start()
    assert model.entered.wait(10)
    threads = [threading.Thread(target=send, args=(i, p, b)) for i, (p, b) in enumerate(requests)]
    for t in threads:
        t.start()
    time.sleep(0.5)  # all of them queued behind the held pass
    model.release.set()
    for t in [first, *threads]:
        t.join(30)
    return [out[i] for i in range(len(requests))]


@pytest.mark.parametrize("expansion", [True, False])
def test_batched_searches_and_reranks_equal_the_library_alone(corpus_index, tiny_checkpoint, expansion):
    model = ColBERT(tiny_checkpoint, backend="torch", dtype="float32", device="cpu", do_query_expansion=expansion)
    index = Index(corpus_index, model, create=False)
    docs = [r["text"] for r in sample_corpus()[::4]]
    requests = [("/search", {"query": q, "k": 5, "explain": i % 3 == 0}) for i, q in enumerate(QUERIES)]
    requests += [("/search", {"query": q, "k": 3, "filter": {"lang": ["en", "ja"]}}) for q in QUERIES[:4]]
    requests += [("/search", {"queries": QUERIES[:3], "k": 4})]
    requests += [("/search", {"query": q, "k": 5, "mode": "hybrid"}) for q in QUERIES[:3]]
    requests += [("/search", {"query": q, "k": 5, "mode": "hybrid", "alpha": 0.5}) for q in QUERIES[3:5]]
    requests += [("/search", {"query": q, "k": 5, "mode": "lexical"}) for q in QUERIES[5:7]]
    requests += [("/rerank", {"query": q, "documents": docs}) for q in QUERIES[:3]]
    blocking = BlockingModel(model)
    with serving(corpus_index, blocking, batching=Batching(max_batch=32, wait_ms=0)) as client:
        responses = _burst(client, blocking, requests)
        batches = dict(client.app.state.engine.worker.batches)
    for (path, body), r in zip(requests, responses):
        assert r.status_code == 200, r.text
        if path == "/rerank":
            want = rerank(body["query"], body["documents"], model=model)
            got = r.json()["results"]
            assert [(g["index"], g["score"]) for g in got] == [(w.index, w.score) for w in want]
            continue
        query = body.get("query", body.get("queries"))
        want = index.search(query, k=body["k"], filter=body.get("filter"), mode=body.get("mode", "semantic"),
                            alpha=body.get("alpha"))
        got = r.json()["hits"]
        if isinstance(query, str):
            got, want = [got], [want]
        assert [[(h["id"], h["score"]) for h in g] for g in got] == [[(h.id, h.score) for h in w] for w in want]
    # The queued requests did share passes: all of them in one with expansion (every query is
    # query_length wide); without it, only queries of the same token length.
    if expansion:
        assert max(batches) >= len(QUERIES)
    else:
        assert max(batches) >= 2 and sum(n * c for n, c in batches.items()) >= len(QUERIES) + 4 + 3 + 3


def test_batching_off_runs_one_query_per_pass(corpus_index, tiny_model):
    blocking = BlockingModel(tiny_model)
    with serving(corpus_index, blocking, batching=Batching(max_batch=1)) as client:
        responses = _burst(client, blocking, [("/search", {"query": q, "k": 3}) for q in QUERIES[:4]])
        assert all(r.status_code == 200 for r in responses)
        assert set(client.app.state.engine.worker.batches) == {1}
        assert client.get("/info").json()["batching"]["enabled"] is False


def test_max_batch_bounds_a_pass(corpus_index, tiny_model):
    blocking = BlockingModel(tiny_model)
    with serving(corpus_index, blocking, batching=Batching(max_batch=3, wait_ms=0)) as client:
        _burst(client, blocking, [("/search", {"query": q, "k": 3}) for q in QUERIES])
        assert max(client.app.state.engine.worker.batches) == 3
