"""The MaxSim kernel against a plain numpy MaxSim, on every path: bfloat16, int8 and float32 (oneDNN,
torch, numpy), gathered blocks and scan copies, single queries and zero-padded batches."""

from __future__ import annotations

import numpy as np
import pytest

from lfm_colbert import cpu, scoring
from lfm_colbert.scoring import Kernel, Layout, maxsim, maxsim_packed, maxsim_rows, maxsim_scan, stack_queries


def _unit(rng, shape):
    v = rng.standard_normal(shape).astype(np.float32)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def plain_maxsim(q: np.ndarray, docs: list[np.ndarray]) -> np.ndarray:
    """The definition, in float64, one document at a time; an empty document scores 0."""
    q = q.astype(np.float64)
    return np.array([(q @ d.astype(np.float64).T).max(1).sum() if len(d) else 0.0 for d in docs])


def bf16(x: np.ndarray) -> np.ndarray:
    """Round float32 to bfloat16 (nearest even), returned as float32."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    return (((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16).astype(np.uint32).view(np.float32)


def plain_maxsim_bf16(q: np.ndarray, docs: list[np.ndarray]) -> np.ndarray:
    """What a bfloat16 GEMM computes: inputs rounded to bfloat16, each dot product accumulated wide and
    rounded to bfloat16, then max and sum in float32."""
    qb = bf16(q).astype(np.float64)
    return np.array([bf16((qb @ bf16(d).astype(np.float64).T).astype(np.float32)).max(1).sum() if len(d) else 0.0
                     for d in docs])


def plain_maxsim_int8(q: np.ndarray, docs: list[np.ndarray]) -> np.ndarray:
    """What an int8 GEMM computes: every token rounded to 63 levels of its own largest magnitude,
    exact integer dot products, scaled back by both tokens' steps, then max and sum."""
    def quantized(x):
        step = (np.abs(x).max(1) / np.float32(63)).astype(np.float32)
        return np.rint(x / np.where(step > 0, step, 1)[:, None]).astype(np.int64), step.astype(np.float64)

    qc, qs = quantized(np.asarray(q, np.float32))
    out = []
    for d in docs:
        if not len(d):
            out.append(0.0)
            continue
        dc, ds = quantized(np.asarray(d, np.float32))
        out.append(((dc @ qc.T) * ds[:, None]).max(0).dot(qs))  # (T, Q) -> max over T, scaled per query token
    return np.array(out)


def _kernels() -> list:
    out = [pytest.param(Kernel("float32", "numpy"), id="float32-numpy")]
    torch = pytest.importorskip("torch")
    out.append(pytest.param(Kernel("float32", "torch"), id="float32-torch"))
    out.append(pytest.param(Kernel("bfloat16", "torch"), id="bfloat16-torch"))
    if cpu._int8_works(torch):
        out.append(pytest.param(Kernel("int8", "torch"), id="int8-torch"))
    if cpu._onednn_linear_works(torch):
        out.append(pytest.param(Kernel("float32", "onednn"), id="float32-onednn"))
        out.append(pytest.param(Kernel("bfloat16", "onednn"), id="bfloat16-onednn"))
    return out


@pytest.fixture(scope="module")
def corpus():
    rng = np.random.default_rng(1)
    docs = [_unit(rng, (int(n), 32)) for n in rng.integers(1, 60, size=400)]
    docs[7] = np.zeros((0, 32), np.float32)  # empty documents score 0
    docs[-1] = np.zeros((0, 32), np.float32)
    queries = [_unit(rng, (9, 32)), _unit(rng, (4, 32)), _unit(rng, (1, 32))]  # zero-padded to 9 in a batch
    offsets = np.concatenate([[0], np.cumsum([len(d) for d in docs])]).astype(np.int64)
    return docs, queries, np.concatenate(docs), offsets


def test_layout_covers_every_document_once_with_bounded_padding():
    rng = np.random.default_rng(0)
    lens = np.concatenate([rng.integers(1, 300, size=5000), [1, 1, 512]])
    lay = Layout.from_lengths(lens)
    assert sorted(lay.order.tolist()) == list(range(len(lens)))
    n_per = np.diff(lay.doc0)
    assert (np.repeat(lay.T, n_per) >= lay.lengths).all()  # every document fits its group's length
    assert lay.n_rows == int((n_per * lay.T).sum()) and lay.n_rows <= (1 + scoring.PAD_WASTE) * lens.sum()
    assert (lens[lay.order] == lay.lengths).all()
    with pytest.raises(ValueError, match="at least one token"):
        Layout.from_lengths(np.array([3, 0]))


def test_tasks_split_groups_at_document_boundaries():
    lay = Layout.from_lengths(np.full(3000, 100))
    tasks = lay.tasks(width=32)
    assert sum(d1 - d0 for _, d0, d1 in tasks) == 3000 and len(tasks) > 1
    assert all((d1 - d0) * 100 <= scoring.TASK_SCORES // 32 for _, d0, d1 in tasks)


def test_a_small_job_is_shared_among_the_threads():
    # 256 documents of 100 tokens fit one task by TASK_SCORES; with 2 threads each gets about half.
    lay = Layout.from_lengths(np.full(256, 100))
    assert len(lay.tasks(width=32)) == 1
    tasks = lay.tasks(width=32, threads=2)
    assert len(tasks) == 2 and sum(d1 - d0 for _, d0, d1 in tasks) == 256
    # but never below MIN_TASK_ROWS padded rows a task: 8 documents stay one task
    assert len(Layout.from_lengths(np.full(8, 100)).tasks(width=32, threads=2)) == 1


@pytest.mark.parametrize("kernel", _kernels())
def test_kernel_matches_plain_maxsim(kernel, corpus):
    docs, queries, flat, offsets = corpus
    got = maxsim_packed(stack_queries(queries), flat, offsets, kernel)  # (n_docs, 3)
    assert got.shape == (len(docs), 3) and got.dtype == np.float32
    for b, q in enumerate(queries):
        if kernel.dtype == "float32":
            np.testing.assert_allclose(got[:, b], plain_maxsim(q, docs), rtol=2e-6, atol=2e-6)
        elif kernel.dtype == "int8":
            np.testing.assert_allclose(got[:, b], plain_maxsim_int8(q, docs), rtol=1e-5, atol=1e-5)
            err = np.abs(got[:, b] - plain_maxsim(q, docs))
            assert err.max() < len(q) * 0.03 and err.max() > 1e-4  # close, and it really ran in int8
        else:
            # Same rounding as the emulation; the GEMM's own accumulation order can move a dot product
            # across a rounding boundary, one bfloat16 step (2^-8) at most, rarely.
            want = plain_maxsim_bf16(q, docs)
            err = np.abs(got[:, b] - want)
            assert err.max() <= len(q) * 2.0 ** -8 and np.mean(err > 1e-6) < 0.05
            assert np.abs(got[:, b] - plain_maxsim(q, docs)).max() > 1e-4  # it really ran in bfloat16
    assert got[7].max() == 0 and got[-1].max() == 0


@pytest.mark.parametrize("kernel", [k for k in _kernels() if k.id != "float32-numpy"])
def test_the_gemm_sees_whole_multiples_of_gemm_rows(kernel, corpus, monkeypatch):
    # oneDNN keeps a compiled kernel per distinct row count: shortlists of every size must not
    # reach it as every size (a long-running server grew by ~0.35 MB a shape).
    docs, queries, flat, offsets = corpus
    seen, gemm = [], Kernel._gemm
    monkeypatch.setattr(Kernel, "_gemm", lambda self, block, q: seen.append(block.shape[0]) or gemm(self, block, q))
    Q = stack_queries(queries)
    whole = maxsim_packed(Q, flat, offsets, kernel)
    for n in (1, 5, 37):  # shortlists of odd sizes
        keep = np.arange(n)
        got = maxsim_packed(Q, np.concatenate([docs[i] for i in keep]),
                            np.concatenate([[0], np.cumsum([len(docs[i]) for i in keep])]), kernel)
        np.testing.assert_allclose(got, whole[:n], rtol=0, atol=1e-5)
    assert seen and all(r % scoring.GEMM_ROWS == 0 for r in seen)


@pytest.mark.parametrize("kernel", _kernels())
def test_scan_copy_scores_equal_gathered_blocks(kernel, corpus):
    docs, queries, flat, offsets = corpus
    lens = np.diff(offsets)
    keep = np.flatnonzero(lens > 0)
    lay = Layout.from_lengths(lens[keep])
    starts = offsets[:-1][keep]
    copy = np.concatenate([flat[lay.gather_index(starts, g, 0, int(lay.doc0[g + 1] - lay.doc0[g]))]
                           for g in range(len(lay.T))])
    if kernel.dtype == "bfloat16":
        copy = bf16(copy).view(np.uint32) >> 16  # bfloat16 bits, as a scan copy stores them
        copy = copy.astype(np.uint16)
    if kernel.dtype == "int8":
        copy = scoring.quantize_int8(copy)  # codes and scales, as a scan copy stores them
    Q = stack_queries(queries)
    gathered = scoring.maxsim_gather(Q, flat, starts, lay, kernel)
    np.testing.assert_array_equal(maxsim_scan(Q, lay, copy, kernel), gathered)


def test_rows_maxsim_and_batches(corpus):
    docs, queries, flat, offsets = corpus
    rows = np.array([3, 0, 399, 150, 7])
    Q = stack_queries(queries)
    got = maxsim_rows(Q, flat, offsets, rows)
    for b, q in enumerate(queries):
        np.testing.assert_allclose(got[:, b], plain_maxsim(q, [docs[r] for r in rows]), rtol=2e-6, atol=2e-6)
        np.testing.assert_allclose(maxsim(q, docs), plain_maxsim(q, docs), rtol=2e-6, atol=2e-6)
    assert maxsim_rows(Q, flat, offsets, np.zeros(0, np.int64)).shape == (0, 3)
    assert maxsim(queries[0], []).shape == (0,)


def test_many_tasks_on_the_thread_pool_give_the_same_scores(corpus, monkeypatch):
    docs, queries, flat, offsets = corpus
    Q = stack_queries(queries)
    whole = maxsim_packed(Q, flat, offsets)
    monkeypatch.setattr(scoring, "TASK_SCORES", 64)  # a task per few documents: dozens of tasks
    monkeypatch.setattr(scoring, "MIN_TASK_ROWS", 1)
    # Other matmul shapes sum in another order: equal to float32 rounding.
    np.testing.assert_allclose(maxsim_packed(Q, flat, offsets), whole, rtol=1e-6, atol=1e-6)


def test_reference_vectors_score_as_stored(shared_data):
    from safetensors.numpy import load_file

    ref = load_file(shared_data / "lfm2-colbert-reference" / "colbert_reference.safetensors")
    docs = [ref[f"document.{i}.vectors"] for i in range(3)]
    want = np.array([ref[f"maxsim.0.{i}"].item() for i in range(3)])
    np.testing.assert_allclose(maxsim(ref["query.0.vectors"], docs), want, rtol=1e-5)
