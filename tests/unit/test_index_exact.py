"""Exact search: equals direct MaxSim, ranks the real reference vectors as stored, survives reopening."""

from __future__ import annotations

import numpy as np
import pytest

from lfm_colbert.errors import InputError
from lfm_colbert.index import Index
from lfm_colbert.index.synthetic_vectors import clustered_documents, queries_for
from lfm_colbert.scoring import maxsim

MODEL = {"model_id": "vectors-only", "variant": "none", "dim": 128, "fingerprint": "test"}


@pytest.fixture(scope="module")
def corpus():
    docs, _ = clustered_documents(400, n_clusters=64, tokens=(3, 30), seed=0)
    return docs, queries_for(docs, 6)


def _index(tmp_path, docs, name="idx"):
    index = Index(tmp_path / name, MODEL)
    index.add_vectors(docs, ids=[f"d{i}" for i in range(len(docs))], metadata=[{"even": i % 2 == 0, "n": i} for i in range(len(docs))])
    return index


@pytest.mark.parametrize("path", ["auto", "portable", "int8"])
def test_exact_search_equals_direct_maxsim(tmp_path, corpus, path, monkeypatch):
    from lfm_colbert import cpu
    from lfm_colbert.index import scancopy

    monkeypatch.setenv(cpu.ENV, path)
    monkeypatch.setattr(scancopy, "MIN_TOKENS", 1)  # scan through the memory-mapped scan copy
    docs, queries = corpus
    index = _index(tmp_path, docs)
    stored = [d.astype(np.float16).astype(np.float32) for d in docs]  # the index keeps float16
    results = index.search_vectors(queries, k=7)
    for q, hits in zip(queries, results):
        want = maxsim(q, stored)
        top = np.argsort(-want, kind="stable")[:7]
        assert [h.id for h in hits] == [f"d{i}" for i in top]
        np.testing.assert_allclose([h.score for h in hits], want[top], rtol=1e-5)


def test_filter_restricts_results_and_scores_are_unchanged(tmp_path, corpus):
    docs, queries = corpus
    index = _index(tmp_path, docs)
    all_hits = {h.id: h.score for h in index.search_vectors(queries[0], k=len(docs))}
    even = index.search_vectors(queries[0], k=5, filter={"even": True})
    assert len(even) == 5 and all(h.metadata["even"] for h in even)
    want = sorted((s, i) for i, s in all_hits.items() if int(i[1:]) % 2 == 0)[::-1][:5]
    assert [h.id for h in even] == [i for _, i in want]
    assert index.search_vectors(queries[0], k=5, filter={"n": [3, 5]}) and {
        h.id for h in index.search_vectors(queries[0], k=5, filter={"n": [3, 5]})
    } == {"d3", "d5"}
    assert index.search_vectors(queries[0], k=5, filter={"n": -1}) == []


def test_a_list_valued_key_matches_when_any_element_does(tmp_path, corpus):
    docs, queries = corpus
    index = Index(tmp_path / "tags", MODEL)
    tags = [["bird", "cold"], ["bird"], [], "bird", ["fish", 7]]
    index.add_vectors(docs[:5], ids=[f"d{i}" for i in range(5)], metadata=[{"tags": t} for t in tags])
    found = lambda f: {h.id for h in index.search_vectors(queries[0], k=5, filter=f)}  # noqa: E731
    assert found({"tags": "bird"}) == {"d0", "d1", "d3"}
    assert found({"tags": ["cold", 7]}) == {"d0", "d4"}
    assert found({"tags": "fish", "missing": "x"}) == set()


def test_reference_vectors_rank_and_score_as_stored(tmp_path, shared_data):
    from safetensors.numpy import load_file

    ref = load_file(shared_data / "lfm2-colbert-reference" / "colbert_reference.safetensors")
    index = Index(tmp_path / "ref", MODEL)
    index.add_vectors([ref[f"document.{i}.vectors"] for i in range(3)], ids=["doc0", "doc1", "doc2"])
    stored = {f"doc{i}": ref[f"maxsim.0.{i}"].item() for i in range(3)}
    hits = index.search_vectors(ref["query.0.vectors"], k=3)
    assert [h.id for h in hits] == sorted(stored, key=stored.get, reverse=True)
    for h in hits:  # float16 storage moves a 28-point score by far less than its gaps (>0.19)
        assert h.score == pytest.approx(stored[h.id], abs=0.02)


def test_reopening_gives_identical_results(tmp_path, corpus):
    docs, queries = corpus
    index = _index(tmp_path, docs)
    before = index.search_vectors(queries, k=10)
    index.close()
    again = Index(tmp_path / "idx")
    assert again.search_vectors(queries, k=10) == before
    assert len(again) == len(docs)


def test_bad_queries_and_k(tmp_path, corpus):
    docs, queries = corpus
    index = _index(tmp_path, docs)
    for k in (0, -3, 2.5, True):
        with pytest.raises(InputError, match="k must be"):
            index.search_vectors(queries[0], k=k)
    with pytest.raises(InputError):
        index.search_vectors(np.zeros((0, 128), np.float32))
    with pytest.raises(InputError, match="dimension"):
        index.search_vectors(np.ones((4, 64), np.float32))
    with pytest.raises(InputError, match="non-empty"):
        index.search("   ")
    for query, message in ((None, "string or a list of strings"), (["ok", 3], "non-empty string"), ([], "no queries")):
        with pytest.raises(InputError, match=message):
            index.search(query)
    with pytest.raises(InputError):
        index.search_vectors(queries[0], filter={"bad key!": 1})


def test_empty_index_and_large_k(tmp_path, corpus):
    docs, queries = corpus
    empty = Index(tmp_path / "empty", MODEL)
    assert empty.search_vectors(queries[0], k=3) == []
    small = Index(tmp_path / "small", MODEL)
    small.add_vectors(docs[:4], ids=list("abcd"))
    assert sorted(h.id for h in small.search_vectors(queries[0], k=100)) == list("abcd")
