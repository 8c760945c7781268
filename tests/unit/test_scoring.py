"""MaxSim kernels: the bucketed scan and the row scorer agree with the plain definition."""

from __future__ import annotations

import numpy as np
import pytest

from lfm_colbert.scoring import build_buckets, maxsim, maxsim_buckets, maxsim_rows, stack_queries


def _unit(rng, shape):
    v = rng.standard_normal(shape).astype(np.float32)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_maxsim_matches_definition():
    rng = np.random.default_rng(0)
    q = _unit(rng, (5, 16))
    docs = [_unit(rng, (n, 16)) for n in (1, 3, 7)]
    want = [sum(max(float(qs @ dt) for dt in d) for qs in q) for d in docs]
    np.testing.assert_allclose(maxsim(q, docs), want, rtol=1e-5)


def test_bucketed_scan_and_rows_match_maxsim_with_variable_lengths():
    rng = np.random.default_rng(1)
    docs = [_unit(rng, (n, 32)) for n in rng.integers(1, 40, size=300)]
    offsets = np.r_[0, np.cumsum([len(d) for d in docs])]
    flat = np.concatenate(docs)
    queries = [_unit(rng, (8, 32)), _unit(rng, (5, 32))]  # different lengths: zero-padded
    Q = stack_queries(queries)
    rows = np.array([3, 0, 299, 150])
    want = np.stack([maxsim(q, [docs[r] for r in rows]) for q in queries], axis=1)
    np.testing.assert_allclose(maxsim_rows(Q, flat, offsets, rows), want, rtol=1e-5, atol=1e-5)
    got = maxsim_buckets(Q, build_buckets(flat, offsets, max_tokens=256))  # many small buckets
    full = np.stack([maxsim(q, docs) for q in queries], axis=1)
    np.testing.assert_allclose(got, full, atol=0.05)  # bfloat16 scan
    assert (np.argsort(-got[:, 0])[:1] == np.argsort(-full[:, 0])[:1]).all()


def test_reference_vectors_score_as_stored(shared_data):
    from safetensors.numpy import load_file

    ref = load_file(shared_data / "lfm2-colbert-reference" / "colbert_reference.safetensors")
    docs = [ref[f"document.{i}.vectors"] for i in range(3)]
    want = np.array([ref[f"maxsim.0.{i}"].item() for i in range(3)])
    got = maxsim(ref["query.0.vectors"], docs)
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_empty_documents_are_rejected_by_the_scan():
    with pytest.raises(ValueError):
        build_buckets(np.zeros((0, 4), np.float32), np.array([0, 0]))
