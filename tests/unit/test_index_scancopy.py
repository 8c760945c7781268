"""Exact search's scan copy: built once beside the stored vectors, equal to scanning them directly,
rebuilt when damaged, skipped (with a warning) where it cannot be written; both CPU paths."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lfm_colbert import cpu
from lfm_colbert.index import scancopy
from lfm_colbert.index.exact import ExactSegment, exact_search
from lfm_colbert.scoring import Kernel, maxsim, maxsim_gather


@pytest.fixture(params=["auto", "portable", "int8"])
def cpu_path(request, monkeypatch):
    monkeypatch.setenv(cpu.ENV, request.param)
    return cpu.plan()


@pytest.fixture()
def segment(tmp_path, monkeypatch):
    monkeypatch.setattr(scancopy, "MIN_TOKENS", 1)
    monkeypatch.setattr(scancopy, "WRITE_ROWS", 50)  # many writes: every group boundary crossed
    rng = np.random.default_rng(0)
    lens = rng.integers(1, 40, size=300)
    v = rng.standard_normal((int(lens.sum()), 64)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    np.save(tmp_path / "vectors.npy", v.astype(np.float16))
    tokens = np.load(tmp_path / "vectors.npy", mmap_mode="r")
    offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    q = rng.standard_normal((2, 8, 64)).astype(np.float32)
    return ExactSegment(tokens, offsets, np.ones(len(lens), bool)), q / np.linalg.norm(q, axis=-1, keepdims=True)


def _gathered(seg, q):
    """The same scan without a copy (for an int8 plan, in float32: see ExactSegment.scores)."""
    fresh = ExactSegment(np.asarray(seg.tokens), seg.offsets, seg.alive)  # in memory: never copied
    return fresh.scores(q)


def _gathered_in_plan(seg, q):
    """The plan's kernel over blocks gathered from the store: what its scan copy must give."""
    plan = cpu.plan()
    return maxsim_gather(q, np.asarray(seg.tokens), np.asarray(seg.offsets[:-1]), seg.layout(), Kernel(plan.dtype, plan.matmul))


def _copy_shape(seg, dtype):
    return scancopy._shape(dtype, seg.layout().n_rows, 64)


def test_copy_is_written_once_and_scores_like_the_store(segment, cpu_path):
    seg, q = segment
    got = seg.scores(q)
    path = scancopy.copy_path(seg.tokens.filename, cpu_path.copy_dtype)
    assert path.exists() and np.load(path, mmap_mode="r").shape == _copy_shape(seg, cpu_path.copy_dtype)
    np.testing.assert_array_equal(got, _gathered_in_plan(seg, q))
    mtime = path.stat().st_mtime_ns
    again = ExactSegment(seg.tokens, seg.offsets, seg.alive)  # a new reader reuses the file
    np.testing.assert_array_equal(again.scores(q), got)
    assert path.stat().st_mtime_ns == mtime


def test_exact_search_on_the_copy_equals_plain_maxsim(segment, cpu_path):
    seg, q = segment
    stored = [np.asarray(seg.tokens[a:b], np.float32) for a, b in zip(seg.offsets[:-1], seg.offsets[1:])]
    seg.alive[::3] = False  # deleted documents are scanned but never returned
    for b, hits in enumerate(exact_search(q, [seg], k=12)):
        want = maxsim(q[b], stored)
        want[~seg.alive] = -np.inf
        top = np.argsort(-want, kind="stable")[:12]
        assert [row for _, row, _ in hits] == top.tolist()
        np.testing.assert_allclose([s for _, _, s in hits], want[top], rtol=1e-5)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "other-shape"])
def test_a_damaged_copy_is_rebuilt(segment, cpu_path, damage):
    seg, q = segment
    want = seg.scores(q)
    path = scancopy.copy_path(seg.tokens.filename, cpu_path.copy_dtype)
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:1000])
    elif damage == "garbage":
        arr = np.load(path)
        np.save(path, np.ascontiguousarray(arr[::-1]))  # right shape and dtype, wrong rows
    else:
        np.save(path, np.zeros((3, 64), np.float16))
    fresh = ExactSegment(seg.tokens, seg.offsets, seg.alive)
    np.testing.assert_array_equal(fresh.scores(q), want)
    assert np.load(path, mmap_mode="r").shape == _copy_shape(seg, cpu_path.copy_dtype)


def test_an_unwritable_copy_falls_back_to_the_store(segment, cpu_path, monkeypatch):
    seg, q = segment

    def refuse(*a, **k):
        raise PermissionError("read-only file system")

    monkeypatch.setattr(scancopy, "_write", refuse)
    monkeypatch.setattr(scancopy, "_warned", set())
    with pytest.warns(RuntimeWarning, match="cannot write the scan copy"):
        got = seg.scores(q)
    np.testing.assert_array_equal(got, _gathered(seg, q))
    assert not list(Path(seg.tokens.filename).parent.glob("*scan-*"))


def test_rescoring_reads_rows_from_the_file_as_stored(segment):
    seg, q = segment
    rows = np.array([5, 0, 299, 17, 17])
    want = np.concatenate([np.asarray(seg.tokens[seg.offsets[r] : seg.offsets[r + 1]]) for r in rows])
    flat, local = seg.read_rows(rows)  # positional reads from vectors.npy
    assert seg._file() is not None
    np.testing.assert_array_equal(flat, want)
    assert local.tolist() == np.concatenate([[0], np.cumsum(np.diff(seg.offsets)[rows])]).tolist()
    mem = ExactSegment(np.asarray(seg.tokens), seg.offsets, seg.alive)  # not a file: indexed instead
    assert mem._file() is None
    np.testing.assert_array_equal(mem.read_rows(rows)[0], want)
    np.testing.assert_array_equal(seg.rescore(q, rows), mem.rescore(q, rows))


def test_the_scan_holds_no_copy_of_the_vectors_in_process_memory(segment, cpu_path):
    """Issue 14 item 12: the old scan kept a bfloat16 copy of every token in RAM for the index's life."""
    seg, q = segment
    seg.scores(q)
    exact_search(q, [seg], k=5)
    held = [v for v in vars(seg).values() if isinstance(v, np.ndarray)]
    for v in seg._copies.values():  # an int8 copy is a pair of views (codes, scales)
        held += [a for a in (v if isinstance(v, tuple) else (v,)) if isinstance(a, np.ndarray)]
    big = [v for v in held if v.nbytes >= seg.tokens.nbytes // 2]
    assert big and all(isinstance(v, np.memmap) for v in big)  # the stored vectors and the scan copy, both mapped


def test_threads_opening_the_vectors_file_at_once_share_one_descriptor(segment, monkeypatch):
    """CI once failed with EBADF: two threads rescoring a new segment each opened vectors.npy and the
    second replaced the first's descriptor, which was closed while the first still read through it
    (and its number could have been reused by another file). A slow fstat widens that window."""
    import os
    import threading
    import time

    seg, q = segment
    fresh = ExactSegment(seg.tokens, seg.offsets, seg.alive)  # no descriptor opened yet
    real_fstat = os.fstat

    def slow_fstat(fd):
        time.sleep(0.05)
        return real_fstat(fd)

    monkeypatch.setattr(os, "fstat", slow_fstat)
    rows = np.arange(0, 300, 7)
    start, errors, got = threading.Barrier(4), [], []

    def rescore():
        try:
            start.wait()
            for _ in range(5):
                got.append(fresh.rescore(q, rows))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=rescore) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    monkeypatch.setattr(os, "fstat", real_fstat)
    assert not errors, errors[0]
    want = ExactSegment(np.asarray(seg.tokens), seg.offsets, seg.alive).rescore(q, rows)
    assert len(got) == 20 and all(np.array_equal(g, want) for g in got)


def test_an_int8_copy_of_odd_width_keeps_its_scales_aligned(tmp_path, monkeypatch):
    """An int8 copy holds the codes, then the float32 scales at the next multiple of 4 bytes."""
    pytest.importorskip("torch")
    monkeypatch.setenv(cpu.ENV, "int8")
    if cpu.plan().dtype != "int8":
        pytest.skip("this torch has no CPU int8 matmul")
    monkeypatch.setattr(scancopy, "MIN_TOKENS", 1)
    rng = np.random.default_rng(3)
    lens = rng.integers(1, 9, size=41)
    np.save(tmp_path / "vectors.npy", rng.standard_normal((int(lens.sum()), 7)).astype(np.float16))
    seg = ExactSegment(np.load(tmp_path / "vectors.npy", mmap_mode="r"),
                       np.concatenate([[0], np.cumsum(lens)]).astype(np.int64), np.ones(len(lens), bool))
    q = rng.standard_normal((2, 5, 7)).astype(np.float32)
    got = seg.scores(q)
    rows = seg.layout().n_rows
    assert (rows * 7) % 4 != 0  # the codes end off float32 alignment: padding was needed
    codes, scales = seg.scan_copy("int8")
    assert codes.shape == (rows, 7) and scales.shape == (rows,) and scales.ctypes.data % 4 == 0
    np.testing.assert_array_equal(got, _gathered_in_plan(seg, q))
