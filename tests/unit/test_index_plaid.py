"""Compressed (PLAID-style) storage: size per token, decoding error, recall against exact search."""

from __future__ import annotations

import numpy as np
import pytest

from lfm_colbert.index import Index
from lfm_colbert.index.plaid import Codec, build_ivf
from lfm_colbert.index.synthetic_vectors import clustered_documents, queries_for

MODEL = {"model_id": "vectors-only", "variant": "none", "dim": 128, "fingerprint": "test"}


@pytest.fixture(scope="module")
def corpus():
    docs, _ = clustered_documents(1500, n_clusters=512, tokens=(10, 40), noise=0.4, seed=0)
    return docs, queries_for(docs, 30)


@pytest.fixture(scope="module")
def exact(tmp_path_factory, corpus):
    docs, queries = corpus
    index = Index(tmp_path_factory.mktemp("exact") / "idx", MODEL)
    index.add_vectors(docs, ids=[str(i) for i in range(len(docs))])
    return index.search_vectors(queries, k=10)


def test_codec_round_trip_and_size():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2000, 128)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    errors = {}
    for nbits in (2, 4):
        codec = Codec.train(x, nbits, n_centroids=64, niter=5)
        codes, packed = codec.encode(x)
        assert packed.shape == (2000, 128 * nbits // 8) and codes.dtype == np.uint16
        assert codec.bytes_per_token == {2: 34, 4: 66}[nbits]  # <= 36 at 2 bits (Stanford PLAID's size)
        decoded = codec.decode(codes, packed)
        errors[nbits] = float(np.mean(np.sum((decoded - x) ** 2, axis=1)))
        centroid_only = float(np.mean(np.sum((codec.centroids[codes.astype(int)] - x) ** 2, axis=1)))
        assert errors[nbits] < centroid_only / 3  # residuals carry real information
    assert errors[4] < errors[2] / 2


def test_inverted_lists_point_at_the_documents_holding_each_centroid():
    codes = np.array([2, 0, 2, 1, 2, 2])
    offsets, docs = build_ivf(codes, np.array([3, 1, 2]), 4)  # doc0 = [2,0,2], doc1 = [1], doc2 = [2,2]
    lists = [docs[offsets[c] : offsets[c + 1]].tolist() for c in range(4)]
    assert lists == [[0], [1], [0, 2], []]


@pytest.mark.parametrize("nbits, target", [(4, 0.99), (2, 0.95)])
def test_compressed_recall_against_exact(tmp_path, corpus, exact, nbits, target):
    docs, queries = corpus
    index = Index(tmp_path / "idx", MODEL, compress=nbits)
    index.add_vectors(docs, ids=[str(i) for i in range(len(docs))])
    got = index.search_vectors(queries, k=10)
    recall = np.mean([len({h.id for h in a} & {h.id for h in b}) / 10 for a, b in zip(got, exact)])
    assert recall >= target, recall
    info = index.info()
    assert info["bytes_per_token_vectors"] == pytest.approx({2: 34, 4: 66}[nbits], abs=1)
    index.close()
    assert Index(tmp_path / "idx").search_vectors(queries, k=10) == got  # reopening changes nothing


def test_codec_save_load_and_format_check(tmp_path):
    from lfm_colbert.errors import IndexFormatError

    rng = np.random.default_rng(1)
    x = rng.standard_normal((600, 128)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    codec = Codec.train(x, 2, n_centroids=8, niter=3)
    codes, packed = codec.encode(x)
    files = codec.save(tmp_path / "codec")
    loaded = Codec.load(tmp_path / "codec", 2, files, Codec.FORMAT)
    np.testing.assert_array_equal(loaded.encode(x)[1], packed)
    np.testing.assert_allclose(loaded.decode(codes, packed), codec.decode(codes, packed), atol=1e-6)
    with pytest.raises(IndexFormatError):
        Codec.load(tmp_path / "codec", 2, files, None)  # a codec written before the format was recorded
    with pytest.raises(IndexFormatError):
        Codec.load(tmp_path / "codec", 4, files, Codec.FORMAT)  # 32 sub-vectors cannot be 4 bits
