"""Exact search: brute-force MaxSim over every live document's half-precision token vectors.

Each segment is scanned by the MaxSim kernel (lfm_colbert.scoring) in the dtype the CPU multiplies
natively (bfloat16, int8 on x86 without it, else float32; lfm_colbert.cpu), from its memory-mapped
scan copy (index/scancopy.py); the shortlist it returns is then rescored in float32 from the float16
store, so reported scores and the final order are full precision. All queries of a batch share each read.
"""

from __future__ import annotations

import os
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lfm_colbert.index.scancopy import open_copy
from lfm_colbert.scoring import Kernel, Layout, maxsim_gather, maxsim_packed, maxsim_scan

# Below this many allowed documents, a filtered search scores them one by one instead of scanning.
SMALL_SUBSET = 2048
# Guards opening a segment's descriptor (fast), apart from the segment's lock held while a scan copy builds.
_OPEN_LOCK = threading.Lock()


class _Descriptor:
    """An open file descriptor, closed when the last reference to it goes."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        weakref.finalize(self, os.close, fd)


def _open_whole(tokens: np.ndarray) -> _Descriptor | None:
    """A descriptor of the file `tokens` maps, when it maps all of it from `tokens.offset` to the end."""
    name = getattr(tokens, "filename", None)
    if not (name and hasattr(os, "preadv") and tokens.ndim == 2 and tokens.flags.c_contiguous):
        return None
    try:
        fd = os.open(name, os.O_RDONLY)
    except OSError:
        return None
    held = _Descriptor(fd)  # closes fd however this ends
    try:
        whole = int(tokens.offset) + tokens.nbytes == os.fstat(fd).st_size
    except OSError:
        return None
    return held if whole else None  # a slice of a map: its offset does not say where it starts


@dataclass
class ExactSegment:
    tokens: np.ndarray  # (N_tok, D) float16, usually memory-mapped
    offsets: np.ndarray  # (n_docs + 1,) int64
    alive: np.ndarray  # (n_docs,) bool
    # Scan state: the layout (from document lengths only) and the scan copy per dtype. Neither
    # depends on `alive`: deleted documents are scanned and dropped, so deletes invalidate nothing.
    _layout: Layout | None = field(default=None, repr=False, compare=False)
    _copies: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    _lock: Any = field(default_factory=threading.Lock, repr=False, compare=False)

    def layout(self) -> Layout:
        if self._layout is None:
            self._layout = Layout.from_lengths(np.diff(np.asarray(self.offsets, dtype=np.int64)))
        return self._layout

    def scan_copy(self, dtype: str) -> Any:
        """The memory-mapped scan copy in `dtype` (built on first use), or None (see scancopy.open_copy)."""
        with self._lock:  # one builder per segment in this process
            if dtype not in self._copies:
                self._copies[dtype] = open_copy(self.tokens, self.offsets, self.layout(), dtype)
            return self._copies[dtype]

    def read_rows(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Stored vectors of documents `rows` laid end to end, and offsets (len(rows) + 1,) into them.

        From a file, with positional reads rather than through the memory map: page-cache folios are
        mapped whole (up to 2 MiB), so rescoring a few dozen scattered documents per query through the
        map left all of vectors.npy in this process's resident set after a few dozen queries."""
        rows = np.asarray(rows, dtype=np.int64)
        offsets = np.asarray(self.offsets, dtype=np.int64)
        lens = offsets[rows + 1] - offsets[rows]
        local = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
        held = self._file()  # referenced until the reads end: the descriptor closes when it goes
        if held is None:
            idx = np.repeat(offsets[rows] - local[:-1], lens) + np.arange(local[-1])
            return np.asarray(self.tokens[idx]), local
        dim, item = self.tokens.shape[1], self.tokens.dtype.itemsize
        out = np.empty((int(local[-1]), dim), dtype=self.tokens.dtype)
        view = memoryview(out.reshape(-1).view(np.uint8))
        base = int(self.tokens.offset)
        for r, a, b in zip(rows.tolist(), local[:-1].tolist(), local[1:].tolist()):
            want, pos = (b - a) * dim * item, base + int(offsets[r]) * dim * item
            got = os.preadv(held.fd, [view[a * dim * item : b * dim * item]], pos)
            if got != want:
                raise OSError(f"short read from {self.tokens.filename}: {got} of {want} bytes")
        return out, local

    def _file(self) -> _Descriptor | None:
        """A read-only descriptor of the memory-mapped vectors file, or None (not a whole-file map, no preadv).

        Kept in `_copies`, which copies of this segment (a new live mask) share, and closed when that
        dict and every reader holding it are gone: closing it with this object would pull it from under a
        copy still searching. Opened under a lock: two threads opening it at once once left one of them
        reading through a number the other's replacement had closed (and the OS had handed to another file)."""
        if "fd" in self._copies:  # every read after the first: no lock on the rescoring path
            return self._copies["fd"]
        with _OPEN_LOCK:
            if "fd" not in self._copies:
                self._copies["fd"] = _open_whole(self.tokens)
            return self._copies["fd"]

    def rescore(self, queries: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Float32 MaxSim (len(rows), B) of some documents, read from the stored float16 vectors."""
        if len(rows) == 0:
            return np.zeros((0, queries.shape[0]), dtype=np.float32)
        flat, local = self.read_rows(rows)
        return maxsim_packed(queries, flat, local)

    def scores(self, queries: np.ndarray) -> np.ndarray:
        """Scan-precision MaxSim (n_docs, B) of queries (B, Q, D) against every document, deleted ones too."""
        from lfm_colbert import cpu

        plan = cpu.plan()
        kernel = Kernel(plan.dtype, plan.matmul)
        copy = self.scan_copy(plan.copy_dtype)
        if copy is not None:
            return maxsim_scan(queries, self.layout(), copy, kernel)
        if kernel.dtype == "int8":  # no copy (a small segment, a read-only index): converting to
            kernel = Kernel.float32()  # float32 costs less than quantizing on every query
        starts = np.asarray(self.offsets[:-1], dtype=np.int64)
        return maxsim_gather(queries, self.tokens, starts, self.layout(), kernel)


def exact_search(
    queries: np.ndarray, segments: list[ExactSegment], k: int, allowed: list[np.ndarray | None] | None = None
) -> list[list[tuple[int, int, float]]]:
    """Top-k (segment index, row, score) per query for queries (B, Q, D)."""
    B = queries.shape[0]
    cand: list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = [[] for _ in range(B)]
    shortlist = max(4 * k, 64)
    for si, seg in enumerate(segments):
        mask = seg.alive if allowed is None or allowed[si] is None else seg.alive & allowed[si]
        rows = np.flatnonzero(mask)
        if len(rows) == 0:
            continue
        filtered = allowed is not None and allowed[si] is not None
        if filtered and len(rows) <= SMALL_SUBSET:
            scores = seg.rescore(queries, rows)  # (n, B) exact already
        else:
            scores = seg.scores(queries)[rows]  # (n, B)
        for b in range(B):
            s = scores[:, b]
            top = np.argpartition(-s, shortlist - 1)[:shortlist] if len(s) > shortlist else np.arange(len(s))
            cand[b].append((np.full(len(top), si), rows[top], s[top]))
    results = []
    for b in range(B):
        if not cand[b]:
            results.append([])
            continue
        seg_idx = np.concatenate([c[0] for c in cand[b]])
        rows = np.concatenate([c[1] for c in cand[b]])
        approx = np.concatenate([c[2] for c in cand[b]])
        if len(approx) > shortlist:
            keep = np.argpartition(-approx, shortlist - 1)[:shortlist]
            seg_idx, rows = seg_idx[keep], rows[keep]
        # Rescore the shortlist in float32 so scores do not carry bfloat16 or int8 rounding.
        final = np.empty(len(rows), dtype=np.float32)
        for si in np.unique(seg_idx):
            m = seg_idx == si
            final[m] = segments[si].rescore(queries[b : b + 1], rows[m])[:, 0]
        order = np.lexsort((rows, seg_idx, -final))[:k]
        results.append([(int(seg_idx[i]), int(rows[i]), float(final[i])) for i in order])
    return results
