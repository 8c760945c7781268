"""Brute-force MaxSim for evaluation (the project's one kernel, in float32) agrees with a plain MaxSim."""

from __future__ import annotations

import numpy as np
import pytest

from lfm_colbert.eval.retrieval import PackedDocs, encode_texts, maxsim_scores


def _unit(rng, n, d=16):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("query_batch", [1, 4, 32])
def test_matches_reference_maxsim(query_batch):
    rng = np.random.default_rng(0)
    docs = [_unit(rng, int(n)) for n in rng.integers(1, 30, size=57)]
    docs[5] = np.zeros((0, 16), np.float32)  # an empty document
    docs[-1] = np.zeros((0, 16), np.float32)
    queries = [_unit(rng, int(n)) for n in rng.integers(3, 33, size=11)]  # varying lengths: padding
    got = maxsim_scores(queries, docs, query_batch=query_batch)
    want = np.stack([[(q.astype(np.float64) @ d.T).max(1).sum() if len(d) else 0.0 for d in docs] for q in queries])
    assert got.shape == (11, 57)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert got[:, 5].max() == 0 and got[:, -1].max() == 0


def test_packed_docs_offsets():
    rng = np.random.default_rng(1)
    docs = [_unit(rng, 3), np.zeros((0, 16), np.float32), _unit(rng, 2)]
    p = PackedDocs(docs)
    assert p.vectors.shape == (5, 16) and list(p.offsets) == [0, 3, 3, 5]
    np.testing.assert_array_equal(p.vectors[3:5], docs[2])


def test_encode_texts_skips_empty_texts_and_keeps_order():
    class Fake:
        def encode(self, texts, *, is_query=False, batch_size=32, show_progress_bar=None):
            self.seen = list(texts)
            return [np.full((len(t), 4), len(t), np.float32) for t in texts]

    fake = Fake()
    out = encode_texts(fake, ["aa", "", "aaaa", "  ", "a"])
    assert fake.seen == ["aa", "aaaa", "a"]  # the encoder refuses empty texts; they get no vectors
    assert [v.shape[0] for v in out] == [2, 0, 4, 0, 1]