"""Hierarchical token pooling: sizes, exact recovery of duplicated tokens, and the cost in recall@10
against exact unpooled search on clustered vectors, through a real index."""

from __future__ import annotations

import numpy as np
import pytest

from lfm_colbert.errors import InputError
from lfm_colbert.index import Index
from lfm_colbert.pooling import pool_tokens

pytest.importorskip("scipy")
MODEL = {"model_id": "vectors-only", "variant": "none", "dim": 128, "fingerprint": "test"}


def test_sizes_and_the_protected_first_token():
    rng = np.random.default_rng(0)
    v = rng.standard_normal((41, 16)).astype(np.float32)
    assert pool_tokens(v, 2).shape == (21, 16) and pool_tokens(v, 3).shape == (14, 16)
    assert pool_tokens(v, 2).dtype == np.float32 and np.array_equal(pool_tokens(v, 2)[0], v[0])
    raw = pool_tokens(v, 2, normalize=False)
    assert np.allclose(pool_tokens(v, 2)[1:], raw[1:] / np.linalg.norm(raw[1:], axis=1, keepdims=True), atol=1e-6)
    assert pool_tokens(v, 1) is v and pool_tokens(v[:2], 2).shape == (2, 16)  # one token to pool: nothing to merge
    assert pool_tokens(v.astype(np.float16), 2).dtype == np.float16
    unit = pool_tokens(v / np.linalg.norm(v, axis=1, keepdims=True), 2)
    assert np.allclose(np.linalg.norm(unit, axis=1), 1, atol=1e-5)
    for bad in (0, -1, 2.0, True):
        with pytest.raises(InputError, match="pool_factor"):
            pool_tokens(v, bad)


def test_each_pooled_vector_is_the_mean_of_a_cluster():
    """Every token given twice: Ward merges the identical pairs first, so pool factor 2 gives the
    distinct tokens back exactly (in some order)."""
    rng = np.random.default_rng(1)
    distinct = rng.standard_normal((12, 8))
    v = np.concatenate([distinct[:1], np.repeat(distinct[1:], 2, axis=0)])  # BOS + 11 pairs
    pooled = pool_tokens(v, 2, normalize=False)
    assert pooled.shape == (12, 8)
    assert sorted(map(tuple, np.round(pooled, 6))) == sorted(map(tuple, np.round(distinct, 6)))


@pytest.mark.parametrize("factor, size, min_recall", [(2, (0.49, 0.53), 0.90), (3, (0.33, 0.37), 0.90)])
def test_a_pooled_index_is_smaller_by_about_the_factor_and_keeps_recall(tmp_path, clustered_corpus, clustered_exact,
                                                                          factor, size, min_recall):
    """Measured on these 1,500 clustered documents: sizes 0.510 / 0.347, recall@10 0.947 / 0.950."""
    docs, queries = clustered_corpus
    index = Index(tmp_path / "pooled", MODEL)
    index.add_vectors([pool_tokens(d, factor) for d in docs], ids=[str(i) for i in range(len(docs))])
    ratio = index.info()["tokens"] / sum(len(d) for d in docs)
    assert size[0] < ratio < size[1]
    hits = index.search_vectors(queries, k=10)
    recall = np.mean([len({h.id for h in a} & {h.id for h in b}) / 10 for a, b in zip(hits, clustered_exact)])
    assert recall >= min_recall
