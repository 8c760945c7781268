"""The scan copy: an exact segment's vectors regrouped by document length (scoring.Layout) and
stored in the dtype the MaxSim kernel multiplies in, memory-mapped like the vectors themselves.

    segments/000001/vectors.npy              (N_tok, D) float16     the stored vectors (never changed)
    segments/000001/scan-v1-bfloat16.npy     (rows, D) uint16       bfloat16 bits, for a bfloat16 scan
    segments/000001/scan-v1-float16.npy      (rows, D) float16      for a float32 scan (portable)
    segments/000001/scan-v1-int8.npy         (bytes,) int8          for an int8 scan (x86 without BF16):
                                                 (rows, D) int8 codes, then rows float32 scales

The copy is derived data, written on a segment's first scan (temporary name, fsync, rename) and
removed with its segment directory. With it a search reads each token once, already in the kernel's
dtype and layout, from the page cache: no float16 -> bfloat16 conversion per query (which costs
as much as the matmul) and no copy of the vectors in process memory, so the OS can share it
between processes and drop it under memory pressure. It costs disk: as much again as vectors.npy
(plus at most 1/16 padding), about half that for int8. Where it cannot be written (a read-only
index, a full disk) the scan gathers and converts blocks from vectors.npy on every query instead:
same results, slower (an int8 plan then scans in float32: exact, and cheaper than quantizing).
"""

from __future__ import annotations

import os
import threading
import warnings
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from lfm_colbert.index.store import fsync_dir
from lfm_colbert.scoring import Layout, quantize_int8

VERSION = 1
# Segments smaller than this are scanned straight from vectors.npy: their conversion is cheap.
MIN_TOKENS = 1 << 15
# Rows converted and written at a time while building.
WRITE_ROWS = 1 << 16

_warned: set[str] = set()
_warn_lock = threading.Lock()


def copy_path(vectors_path: str | os.PathLike, dtype: str) -> Path:
    return Path(vectors_path).parent / f"scan-v{VERSION}-{dtype}.npy"


def _stored(dtype: str) -> np.dtype:
    return np.dtype({"bfloat16": np.uint16, "int8": np.int8}.get(dtype, np.float16))


def _scales_at(rows: int, dim: int) -> int:
    """Where an int8 copy's scales start: after the codes, rounded up to float32 alignment."""
    return -(-rows * dim // 4) * 4


def _shape(dtype: str, rows: int, dim: int) -> tuple[int, ...]:
    return (_scales_at(rows, dim) + 4 * rows,) if dtype == "int8" else (rows, dim)


def _views(copy: np.ndarray, dtype: str, rows: int, dim: int) -> Any:
    """The kernel's view of a loaded copy: the array itself, or for int8 (codes (rows, D), scales (rows,))."""
    if dtype != "int8":
        return copy
    at = _scales_at(rows, dim)
    return copy[: rows * dim].reshape(rows, dim), copy[at:].view(np.float32)


def _convert(block: np.ndarray, dtype: str) -> Any:
    """Stored float16 rows -> the copy's dtype (bfloat16 rounded to nearest even, as torch does;
    int8 as a pair of codes and scales)."""
    if dtype == "int8":
        return quantize_int8(block)
    if dtype == "float16":
        return np.asarray(block, dtype=np.float16)
    try:
        import torch
    except ImportError:  # numpy: round the float32 bits to nearest even by hand
        u = np.asarray(block, dtype=np.float32).view(np.uint32)
        return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    t = torch.from_numpy(np.ascontiguousarray(block, dtype=np.float32)).to(torch.bfloat16)
    return t.view(torch.int16).numpy().view(np.uint16)


def _spot_check(copy: Any, tokens: np.ndarray, starts: np.ndarray, layout: Layout, dtype: str) -> bool:
    """A few documents of the copy against the stored vectors: catches a copy of other vectors."""
    groups = np.unique(np.linspace(0, len(layout.T) - 1, num=min(8, len(layout.T))).astype(np.int64))
    for g in groups:
        idx = layout.gather_index(starts, int(g), 0, 1)
        rows = slice(layout.row0[g], layout.row0[g] + len(idx))
        want = _convert(np.asarray(tokens[idx]), dtype)
        if not all(np.array_equal(np.asarray(a[rows]), b) for a, b in zip(_parts(copy), _parts(want))):
            return False
    return True


def _parts(x: Any) -> tuple[np.ndarray, ...]:
    """A copy (or converted rows) as its arrays: (codes, scales) for int8, else the one array."""
    return x if isinstance(x, tuple) else (x,)


def _pieces(starts: np.ndarray, layout: Layout) -> Iterator[np.ndarray]:
    """Flat-store token indices of the copy's rows, in order, about WRITE_ROWS at a time."""
    for g in range(len(layout.T)):
        n, T = int(layout.doc0[g + 1] - layout.doc0[g]), int(layout.T[g])
        step = max(1, WRITE_ROWS // T)
        for d0 in range(0, n, step):
            yield layout.gather_index(starts, g, d0, min(n, d0 + step))


def _write(dest: Path, source: str, starts: np.ndarray, layout: Layout, dtype: str, dim: int) -> None:
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    # A mapping of our own, dropped on return: the float16 pages read here do not stay in this
    # process's resident set (the index's own mapping of vectors.npy is left untouched).
    src = np.load(source, mmap_mode="r")
    try:
        with open(tmp, "wb") as f:
            header = {"descr": _stored(dtype).str, "fortran_order": False, "shape": _shape(dtype, layout.n_rows, dim)}
            np.lib.format.write_array_header_1_0(f, header)
            scales = []  # int8: written after the codes (4 bytes a token, held until then)
            for idx in _pieces(starts, layout):
                out = _convert(src[idx], dtype)
                if dtype == "int8":
                    out, s = out
                    scales.append(s)
                f.write(np.ascontiguousarray(out).tobytes())
            if dtype == "int8":
                f.write(b"\0" * (_scales_at(layout.n_rows, dim) - layout.n_rows * dim))
                f.write(np.concatenate(scales).astype(np.float32).tobytes())
            f.flush()
            os.fsync(f.fileno())
        try:
            os.replace(tmp, dest)
        except OSError:  # Windows: another process's copy is in place and mapped; it is identical
            if not dest.exists():
                raise
        fsync_dir(dest.parent)
    finally:
        del src
        if tmp.exists():
            tmp.unlink()


def open_copy(tokens: np.ndarray, offsets: np.ndarray, layout: Layout, dtype: str) -> Any:
    """The segment's scan copy in `dtype`, memory-mapped, built first if missing or unusable (for
    int8 the pair of codes and scales); None for a segment not backed by a file, a small one, or
    where the copy cannot be written."""
    source = getattr(tokens, "filename", None)
    if source is None or len(tokens) < MIN_TOKENS or tokens.ndim != 2:
        return None
    dest = copy_path(source, dtype)
    starts = np.asarray(offsets[:-1], dtype=np.int64)
    dim = tokens.shape[1]
    if dest.exists():
        try:
            copy = np.load(dest, mmap_mode="c")  # copy-on-write: writable for torch, never written
            if copy.shape == _shape(dtype, layout.n_rows, dim) and copy.dtype == _stored(dtype):
                views = _views(copy, dtype, layout.n_rows, dim)
                if _spot_check(views, tokens, starts, layout, dtype):
                    return views
        except (ValueError, OSError, EOFError):
            pass  # damaged or from another layout: our own derived file, rebuilt below
    try:
        _write(dest, source, starts, layout, dtype, dim)
        return _views(np.load(dest, mmap_mode="c"), dtype, layout.n_rows, dim)
    except OSError as exc:
        key = str(Path(source).parent)
        with _warn_lock:
            if key not in _warned:
                _warned.add(key)
                warnings.warn(f"cannot write the scan copy {dest} ({exc}); exact search converts vectors "
                              "on every query instead (same results, slower)", RuntimeWarning, stacklevel=3)
        return None
