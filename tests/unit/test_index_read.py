"""Reading documents back: get by id, list with filters and pages, iteration, metadata keys."""

from __future__ import annotations

import pytest

from lfm_colbert.errors import InputError
from lfm_colbert.index import Document, Index
from lfm_colbert.index.synthetic_vectors import clustered_documents

MODEL = {"model_id": "vectors-only", "variant": "none", "dim": 128, "fingerprint": "test"}


@pytest.fixture()
def index(tmp_path):
    docs, _ = clustered_documents(30, n_clusters=8, tokens=(3, 9), seed=1)
    idx = Index(tmp_path / "idx", MODEL)
    ids = [f"d{i:02d}" for i in range(30)]
    meta = [{"lang": "en" if i % 3 else "fr", **({"year": 2000 + i} if i % 2 else {})} for i in range(30)]
    idx.add_vectors(docs[:20], ids=ids[:20], texts=[f"text {i}" for i in range(20)], metadata=meta[:20])
    idx.add_vectors(docs[20:], ids=ids[20:], texts=[f"text {i}" for i in range(20, 30)], metadata=meta[20:],
                    parents=["p"] * 10)
    return idx


def test_get_one_and_many(index):
    assert index.get("d04") == Document("d04", "text 4", {"lang": "en"}, None)
    assert index.get("d25") == Document("d25", "text 25", {"lang": "en", "year": 2025}, "p")
    assert index.get("nope") is None
    assert [d and d.id for d in index.get(["d01", "nope", "d00"])] == ["d01", None, "d00"]
    with pytest.raises(InputError):
        index.get([5])


def test_list_filters_pages_and_iteration(index):
    fr = index.list(filter={"lang": "fr"})
    assert [d.id for d in fr] == [f"d{i:02d}" for i in range(0, 30, 3)]
    page1 = index.list(limit=7)
    page2 = index.list(limit=7, after=page1[-1].id)
    assert [d.id for d in page1 + page2] == [f"d{i:02d}" for i in range(14)]
    assert [d.id for d in index] == [f"d{i:02d}" for i in range(30)]
    index.delete(["d03"])
    assert "d03" not in [d.id for d in index]
    with pytest.raises(InputError):
        index.list(limit=0)


def test_metadata_keys(index):
    assert index.metadata_keys() == {"lang": 30, "year": 15}


@pytest.mark.parametrize("compress", [None, 4])
def test_vectors_round_trip(tmp_path, compress):
    import numpy as np

    docs, _ = clustered_documents(40, n_clusters=8, tokens=(3, 9), seed=2)
    idx = Index(tmp_path / "idx", MODEL, compress=compress, n_centroids=8 if compress else None,
                train_tokens=1 if compress else None)
    ids = [f"d{i}" for i in range(40)]
    idx.add_vectors(docs, ids=ids)
    got = idx.vectors(["d7", "d0"])
    assert [g.shape for g in got] == [docs[7].shape, docs[0].shape]
    if compress is None:  # stored as float16
        np.testing.assert_allclose(got[0], docs[7].astype(np.float16), rtol=0, atol=0)
    else:  # decoded: close to the original, unit norm
        assert min(np.sum(got[0] * docs[7], axis=1)) > 0.8
    with pytest.raises(InputError):
        idx.vectors(["nope"])
