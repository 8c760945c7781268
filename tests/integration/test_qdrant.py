"""QdrantStore against the embedded exact index, on the same vectors, in qdrant-client's local mode
(memory and a directory) and in Qdrant Edge (Qdrant's own engine, in-process)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from lfm_colbert.errors import IndexFormatError, InputError
from lfm_colbert.index import Index
from lfm_colbert.index.synthetic_vectors import clustered_documents, queries_for

pytest.importorskip("qdrant_client", reason="needs lfm-colbert[qdrant]")
pytest.importorskip("qdrant_edge", reason="needs lfm-colbert[qdrant-edge]")

from filter_cases import FILTERS as FILTERS_ALL  # noqa: E402
from filter_cases import METADATA, TEXT_RANGES, matches  # noqa: E402

from lfm_colbert.stores import copy_documents, open_store  # noqa: E402
from lfm_colbert.stores.qdrant import QdrantStore, point_id  # noqa: E402

MODEL = {"model_id": "vectors-only", "variant": "none", "dim": 128, "fingerprint": "test"}
N_DOCS = 600
# The embedded index's full filter language ($ne, ranges, $exists, $and / $or / $not, typed values)
# lives in lfm_colbert.index.filters once issue 17 is merged; with it, filters are also compared
# with the embedded index directly, not only with the language's written-out semantics.
HAS_LANGUAGE = importlib.util.find_spec("lfm_colbert.index.filters") is not None


def _meta(i: int) -> dict:
    return {"lang": ["en", "de", "fr"][i % 3], "n": i % 5, "flag": bool(i % 2), "half": (i % 4) / 2,
            "tags": ["bird", "cold"] if i % 4 == 0 else ["warm"], "a.b": "dotted" if i % 6 == 0 else "plain"}


@pytest.fixture(scope="module")
def corpus():
    docs, _ = clustered_documents(N_DOCS, n_clusters=512, tokens=(10, 40), noise=0.4, seed=3)
    return docs, queries_for(docs, 50, seed=4), [f"d{i}" for i in range(N_DOCS)], [_meta(i) for i in range(N_DOCS)]


@pytest.fixture(scope="module")
def exact(tmp_path_factory, corpus):
    docs, _, ids, meta = corpus
    index = Index(tmp_path_factory.mktemp("exact") / "idx", MODEL)
    index.add_vectors(docs, ids=ids, metadata=meta)
    return index


# qdrant-client's local mode on a directory is the in-memory engine plus a pickle in SQLite, 10x
# slower to fill: test_local_mode_dir_persists covers what it adds.
SPECS = {"memory": lambda d: "qdrant+memory:", "edge": lambda d: f"qdrant+edge:{d}/edge?dense=1"}


@pytest.fixture(scope="module", params=list(SPECS))
def store(request, tmp_path_factory, corpus):
    docs, _, ids, meta = corpus
    s = open_store(SPECS[request.param](tmp_path_factory.mktemp(request.param)), MODEL)
    s.add_vectors(docs, ids=ids, metadata=meta)
    yield s
    s.close()


def _ids(hits):
    return [h.id for h in hits]


def test_top10_agrees_with_exact_index(store, exact, corpus):
    _, queries, _, _ = corpus
    got, ref = store.search_vectors(queries, k=10), exact.search_vectors(queries, k=10)
    agreement = np.mean([len(set(_ids(a)) & set(_ids(b))) / 10 for a, b in zip(got, ref)])
    assert agreement >= 0.99
    # Same vectors (float16), same MaxSim: the scores agree but for rounding.
    assert np.allclose([h.score for h in got[0]], [h.score for h in ref[0]], rtol=1e-4)  # Edge scores in float16 storage precision
    assert got[0][0].metadata == exact.get(got[0][0].id).metadata


FILTERS = [
    {"lang": "en"}, {"lang": ["de", "fr"]}, {"n": 3}, {"n": [1, 2]}, {"n": 1.0}, {"half": 0.5},
    {"flag": True}, {"flag": False}, {"n": "3"}, {"tags": "bird"}, {"tags": ["cold", "warm"]},
    {"a.b": "dotted"}, {"lang": "en", "n": [0, 4]}, {"lang": None}, {"missing": "x"}, {"lang": ["en", None]},
]


@pytest.mark.parametrize("flt", FILTERS, ids=[str(f) for f in FILTERS])
def test_filters_as_the_embedded_index(store, exact, corpus, flt):
    _, queries, _, _ = corpus
    got, ref = store.search_vectors(queries[:2], k=10, filter=flt), exact.search_vectors(queries[:2], k=10, filter=flt)
    assert [_ids(h) for h in got] == [_ids(h) for h in ref]
    assert sorted(d.id for d in store.list(filter=flt)) == sorted(d.id for d in exact.list(filter=flt))


def test_bad_filters_are_input_errors(store, corpus):
    q = corpus[1][0]
    bad = ({}, {"bad key!": 1}, {"lang": []}, {"lang": {"$gt": True}}, {"lang": {"$like": "e"}}, {"n": float("nan")},
           {"n": 1 << 70}, {"$or": []}, {"lang": {"$eq": ["en"]}}, {"lang": {"$exists": "yes"}}, {"lang": {}},
           *TEXT_RANGES)  # text ranges: the embedded index has them, Qdrant orders only numbers
    for f in bad:
        with pytest.raises(InputError):
            store.search_vectors(q, k=3, filter=f)


@pytest.mark.parametrize("kind", list(SPECS))
def test_filter_language(tmp_path, kind):
    """Every operator of the embedded filter language (typed values, lists, $ne / $nin, ranges,
    $exists, $and / $or / $not) selects on a Qdrant store what the language's semantics say."""
    rng = np.random.default_rng(0)
    ids = [f"d{i}" for i in range(len(METADATA))]
    with open_store(SPECS[kind](tmp_path), MODEL) as s:
        s.add_vectors([rng.standard_normal((4, 128)).astype(np.float32) for _ in ids], ids=ids, metadata=METADATA)
        q = rng.standard_normal((3, 128)).astype(np.float32)
        assert s.metadata_keys() == {"Publication Year": 1, "a.b": 1, "date": 2, "flag": 4, "lang": 5, "nested": 1,
                                     "note": 2, "score": 2, "tags": 4, "year": 5}
        for f in FILTERS_ALL:
            want = {i for i, m in zip(ids, METADATA) if matches(m, f)}
            assert {d.id for d in s.list(filter=f)} == want, f
            assert {h.id for h in s.search_vectors(q, k=10, filter=f)} == want, f
            if HAS_LANGUAGE:  # the embedded index speaks the whole language: the same documents
                assert {d.id for d in s.list(filter=f)} == {d.id for d in _language_index(tmp_path).list(filter=f)}, f


def _language_index(tmp_path):
    path = tmp_path / "language-index"
    if not path.exists():
        index = Index(path, MODEL)
        index.add_vectors([np.ones((2, 128), np.float32)] * len(METADATA), ids=[f"d{i}" for i in range(len(METADATA))],
                          metadata=METADATA)
    return Index(path)


def test_reads_match_the_index(store, exact, corpus):
    docs, _, ids, _ = corpus
    assert len(store) == N_DOCS and "d7" in store and "nope" not in store
    assert store.get(["d7", "nope"])[1] is None and store.get("d7") == exact.get("d7")
    v = store.vectors(["d7", "d0"])
    assert np.array_equal(v[0], docs[7].astype(np.float16).astype(np.float32)) and np.array_equal(v[1], exact.vectors(["d0"])[0])
    with pytest.raises(InputError, match="not in the store"):
        store.vectors(["nope"])
    page1 = store.list(limit=250)
    page2 = store.list(limit=250, after=page1[-1].id)
    rest = store.list(after=page2[-1].id)
    assert len(page1) == len(page2) == 250 and {d.id for d in page1 + page2 + rest} == set(ids)
    hits = store.rerank(corpus[1][0], ["d1", "d2", "d3"])
    assert sorted(_ids(hits)) == ["d1", "d2", "d3"] and hits[0].score >= hits[-1].score


def _state(s):
    return sorted((d.id, d.text, d.parent, tuple(sorted(d.metadata.items()))) for d in s.list())


@pytest.mark.parametrize("kind", ["memory", "edge"])
def test_updates_as_the_embedded_index(tmp_path, corpus, kind):
    """The same add / upsert / delete sequence on an index and a store leaves the same documents."""
    docs = corpus[0]
    index = Index(tmp_path / "idx", MODEL)
    store = open_store(SPECS[kind](tmp_path), MODEL)
    ops = [
        ("add", dict(vectors=docs[:6], ids=["a", "b", "f#0", "f#1", "f#2", "g"], texts=list("abcdef"),
                     metadata=[{"k": 1}] * 6, parents=[None, None, "f", "f", "f", None])),
        ("upsert", dict(vectors=docs[6:8], ids=["f#0", "f#1"], texts=["F0", "F1"], metadata=[{"k": 2}] * 2,
                        parents=["f", "f"], upsert=True)),  # a shorter new version of f drops f#2
        ("upsert", dict(vectors=docs[8:9], ids=["a"], texts=["A"], metadata=[None], upsert=True)),
    ]
    for _, kw in ops:
        for s in (index, store):
            s.add_vectors(**kw)
        assert _state(store) == _state(index)
    for s in (index, store):
        with pytest.raises(InputError, match="already in the"):
            s.add_vectors(docs[:1], ids=["a"])
        with pytest.raises(InputError, match="not in the"):
            s.delete(["g", "nope"])
        assert s.delete(["f"]) == 2  # a parent id deletes its passages
        assert s.delete(["nope", "g"], missing_ok=True) == 1
    assert _state(store) == _state(index) == [("a", "A", None, ()), ("b", "b", None, (("k", 1),))]
    assert store.unchanged(["a", "b"], ["A", "changed"], [None, {"k": 1}]) == index.unchanged(["a", "b"], ["A", "changed"], [None, {"k": 1}]) == {"a"}
    store.close()


def test_model_recorded_and_checked(tmp_path, corpus):
    spec = f"qdrant+edge:{tmp_path}/e"
    with open_store(spec, MODEL) as s:
        s.add_vectors(corpus[0][:2], ids=["x", "y"])
    with pytest.raises(IndexFormatError, match="fingerprint"):
        open_store(spec, {**MODEL, "fingerprint": "other"})
    with pytest.raises(IndexFormatError, match="dim"):
        open_store(spec, {**MODEL, "dim": 64, "fingerprint": None})
    with pytest.raises(InputError, match="dense"):
        open_store(spec + "?dense=1")
    with open_store(spec, create=False) as s:  # reopened from disk: the recorded model, the same documents
        assert s.info()["model"] == MODEL and len(s) == 2 and s.info()["storage"]["vectors"]["colbert"]["hnsw_m"] == 0
    with pytest.raises(IndexFormatError, match="no lfm-colbert collection"):
        open_store(f"qdrant+edge:{tmp_path}/none", create=False)
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "data.bin").write_bytes(b"x")
    with pytest.raises(InputError, match="not an lfm-colbert"):
        open_store(f"qdrant+edge:{tmp_path}/foreign", MODEL)
    assert (tmp_path / "foreign" / "data.bin").read_bytes() == b"x"


def test_foreign_collection_is_refused(tmp_path):
    from qdrant_client import QdrantClient, models

    client = QdrantClient(path=str(tmp_path / "q"))
    client.create_collection("theirs", vectors_config=models.VectorParams(size=4, distance=models.Distance.DOT))
    with pytest.raises(IndexFormatError, match="not created by lfm-colbert"):
        QdrantStore("qdrant+memory:?collection=theirs", MODEL, client=client)
    assert client.collection_exists("theirs")
    client.close()


def test_local_mode_dir_persists(tmp_path, corpus):
    spec = f"qdrant+path:{tmp_path}/q?collection=docs"
    with open_store(spec, MODEL) as s:
        s.add_vectors(corpus[0][:3], ids=["x", "y", "z"], metadata=[{"lang": "en"}] * 3)
    with open_store(spec, create=False) as s:
        assert len(s) == 3 and s.search_vectors(corpus[1][0], k=1, filter={"lang": "en"})[0].id in {"x", "y", "z"}


def test_dense_prefetch_recall(tmp_path, exact, corpus):
    """Recall of dense prefetch + exact MaxSim rerank against the full scan grows with the prefetch size."""
    docs, queries, ids, meta = corpus
    with open_store(f"qdrant+edge:{tmp_path}/e?dense=1", MODEL) as s:
        s.add_vectors(docs, ids=ids, metadata=meta)
        ref = exact.search_vectors(queries, k=10)
        recall = {}
        for n in (20, 200, N_DOCS):
            got = s.search_vectors(queries, k=10, prefetch=n)
            recall[n] = np.mean([len(set(_ids(a)) & set(_ids(b))) / 10 for a, b in zip(got, ref)])
        assert recall[20] <= recall[200] <= recall[N_DOCS] == 1.0
        assert recall[20] < 1.0  # a first stage that can miss: the measurement is not vacuous
        filtered = s.search_vectors(queries[:3], k=5, filter={"lang": "en"}, prefetch=N_DOCS)
        assert [_ids(h) for h in filtered] == [_ids(h) for h in exact.search_vectors(queries[:3], k=5, filter={"lang": "en"})]
    with open_store(f"qdrant+edge:{tmp_path}/plain", MODEL) as s:
        with pytest.raises(InputError, match="no dense vectors"):
            s.search_vectors(queries[0], prefetch=10)


def test_copy_index_to_qdrant_and_back(tmp_path, exact, corpus):
    """Embedded -> Qdrant Edge -> embedded, without encoding: same ids, vectors and top-10."""
    queries = corpus[1][:10]
    edge = f"qdrant+edge:{tmp_path}/edge"
    assert copy_documents(exact, edge, batch_size=250) == (N_DOCS, 0)
    assert copy_documents(exact, edge) == (0, N_DOCS)  # a second run finds them all there
    back = tmp_path / "back"
    assert copy_documents(edge, str(back)) == (N_DOCS, 0)
    again = Index(back)
    assert again.manifest["model"] == MODEL
    assert [d.id for d in again] == [d.id for d in exact]
    some = ["d0", "d5", "d599"]
    assert all(np.array_equal(a, b) for a, b in zip(again.vectors(some), exact.vectors(some)))
    assert [_ids(h) for h in again.search_vectors(queries, k=10)] == [_ids(h) for h in exact.search_vectors(queries, k=10)]
    assert again.get("d3") == exact.get("d3")


def test_point_ids_are_stable_uuid5():
    """Point ids must never change between versions: a collection built today is upserted into later."""
    import uuid

    assert point_id("doc-1") == "efea477a-9712-5166-84f5-a37e77c9be1c" != point_id("doc-2")
    assert uuid.UUID(point_id("doc-1")).version == 5
