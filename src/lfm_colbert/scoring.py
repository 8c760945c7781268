"""MaxSim late-interaction scoring: one kernel for exact search, rescoring, rerank() and evaluation.

score(q, d) = sum over query tokens s of max over document tokens t of <q_s, d_t>

Documents are stored flat: all token vectors in one (N_tokens, D) array and offsets (n_docs + 1,),
document i being tokens[offsets[i]:offsets[i+1]]. The kernel regroups documents by length
(`Layout`): documents of one group are padded to one length T by repeating their own last token
(a repeated token cannot change a max, so scores stay exact), so a group of m documents is one
(m * T, D) block and one matmul against all query tokens of a batch of queries:

    S = block @ queries.T          (m * T, B * Q)   the GEMM, in the plan's dtype
    S.view(m, T, B * Q).amax(1)    (m, B * Q)       max over each document's tokens, in float32
    .view(m, B, Q).sum(-1)         (m, B)

The max runs over rows of B * Q contiguous scores, i.e. whole vectors. A block comes either from
a scan copy (the documents already regrouped and converted, memory-mapped: `maxsim_scan`), or is
gathered from the flat store on the fly (`maxsim_packed`, `maxsim_rows`, `maxsim`). Blocks are
scored by a small pool of threads, each running single-threaded torch ops, so a loaded machine
never stalls a parallel region, and a batch of queries shares one read of every block.

The dtype (bfloat16 where the CPU multiplies it natively, int8 on other x86 CPUs, else float32)
comes from `lfm_colbert.cpu.plan()`; float32 calls (rescoring, rerank, evaluation) are exact in
float32. An int8 GEMM multiplies codes: every token (query and document) is scaled to its own
largest magnitude (`quantize_int8`), the int32 products are scaled back per document token before
the max and per query token after it (a positive factor commutes with the max).
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from lfm_colbert import cpu

# Output scores one task holds at once (float32): bounds a task's scratch to 4 MiB.
TASK_SCORES = 1 << 20
# Fewest block rows per task: smaller matmuls lose more to per-call overhead than threads win.
MIN_TASK_ROWS = 1024
# Query tokens a GEMM gets at least (see Kernel.prepare).
MIN_COLUMNS = 32
# Padding a length group may add, as a fraction of its real tokens.
PAD_WASTE = 1 / 16
# GEMM rows come in multiples of this (a short tail is zero-padded): oneDNN compiles and keeps a
# kernel for every distinct row count it sees, about 0.35 MB each with AMX, never released, so
# shortlists of every size made a long-running process grow without bound (bench/search.py).
GEMM_ROWS = 256
# int8 codes span -63..63, not -127..127: x86 without VNNI adds int8 products in saturating int16
# pairs (vpmaddubsw, one operand shifted to 0..255), and 2 x 255 x 63 = 32130 is the most that fits
# (capped at AVX2, +-127 codes gave 2.6x the error of +-63 ones: saturated sums, not rounding).
INT8_LEVELS = 63


def _torch() -> Any:
    try:
        import torch
    except ImportError:  # numpy fallback: float32 only
        return None
    return torch


def stack_queries(queries: Sequence[np.ndarray]) -> np.ndarray:
    """Queries of any lengths -> (B, Q_max, D) float32, zero-padded (a zero token adds exactly 0)."""
    if len(queries) == 0:
        raise ValueError("no queries")
    qs = [np.asarray(q, dtype=np.float32) for q in queries]
    if any(q.ndim != 2 for q in qs):
        raise ValueError("each query must be a 2-D (tokens, dim) array")
    q_max = max(1, max(q.shape[0] for q in qs))  # one zero row even if every query is empty
    out = np.zeros((len(qs), q_max, qs[0].shape[1]), dtype=np.float32)
    for i, q in enumerate(qs):
        out[i, : q.shape[0]] = q
    return out


def quantize_int8(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows (n, D) -> int8 codes (n, D) and float32 scales (n,), x ~= codes * scales[:, None], each
    row scaled to its own largest magnitude (an all-zero row gets scale 0 and zero codes)."""
    x = np.asarray(x, dtype=np.float32)
    scales = (np.abs(x).max(axis=1, initial=0.0) / INT8_LEVELS).astype(np.float32)  # (n,)
    codes = np.rint(x / np.where(scales > 0, scales, 1)[:, None]).astype(np.int8)  # |codes| <= INT8_LEVELS
    return codes, scales


def token_ranges(offsets: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Token indices of documents `rows` laid end to end, and where each document starts in that list."""
    lens = offsets[rows + 1] - offsets[rows]
    starts = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lens, out=starts[1:])
    idx = np.repeat(offsets[rows] - starts[:-1], lens) + np.arange(starts[-1])
    return idx, starts


# -- layout ----------------------------------------------------------------------------------------


@dataclass
class Layout:
    """Documents regrouped by length. Group g holds documents order[doc0[g]:doc0[g+1]], each padded
    to length T[g]; in a scan copy its rows are row0[g] : row0[g] + n_g * T[g]."""

    order: np.ndarray  # (n,) document positions, in scan order
    lengths: np.ndarray  # (n,) real lengths, in scan order
    doc0: np.ndarray  # (G + 1,)
    T: np.ndarray  # (G,)
    row0: np.ndarray  # (G + 1,)

    @classmethod
    def from_lengths(cls, lengths: np.ndarray, waste: float = PAD_WASTE) -> "Layout":
        """Sort by length and cut groups greedily, each as long as its padding stays under `waste`."""
        lengths = np.asarray(lengths, dtype=np.int64)
        if len(lengths) and lengths.min() <= 0:
            raise ValueError("documents must have at least one token")
        order = np.argsort(lengths, kind="stable")
        ls = lengths[order]
        csum = np.concatenate([[0], np.cumsum(ls)])
        doc0, T = [0], []
        i, n = 0, len(ls)
        while i < n:
            # Largest j with (j - i) * ls[j-1] <= (1 + waste) * (csum[j] - csum[i]); the left side
            # grows faster than the right, so a binary search over j finds the boundary.
            lo, hi = i + 1, n
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if (mid - i) * ls[mid - 1] <= (1 + waste) * (csum[mid] - csum[i]):
                    lo = mid
                else:
                    hi = mid - 1
            T.append(int(ls[lo - 1]))
            doc0.append(lo)
            i = lo
        doc0_a, T_a = np.array(doc0, dtype=np.int64), np.array(T, dtype=np.int64)
        row0 = np.concatenate([[0], np.cumsum(np.diff(doc0_a) * T_a)]).astype(np.int64)
        return cls(order, ls, doc0_a, T_a, row0)

    @property
    def n_docs(self) -> int:
        return len(self.order)

    @property
    def n_rows(self) -> int:
        return int(self.row0[-1])

    def gather_index(self, starts: np.ndarray, g: int, d0: int, d1: int) -> np.ndarray:
        """Flat-store token indices (m * T,) of documents d0:d1 of group g, padded by repetition;
        starts[i] is where document i's tokens begin in the flat store."""
        T = int(self.T[g])
        docs = self.order[self.doc0[g] + d0 : self.doc0[g] + d1]
        lens = self.lengths[self.doc0[g] + d0 : self.doc0[g] + d1]
        idx = starts[docs][:, None] + np.minimum(np.arange(T)[None, :], lens[:, None] - 1)  # (m, T)
        return idx.reshape(-1)

    def tasks(self, width: int, threads: int = 1) -> list[tuple[int, int, int]]:
        """(group, first doc, end doc) pieces of about TASK_SCORES / width padded rows each, and at
        most 1 / threads of all rows: a small job (a shortlist, 25k tokens) is still shared out."""
        rows = max(MIN_TASK_ROWS, min(TASK_SCORES // max(1, width), -(-self.n_rows // max(1, threads))))
        out = []
        for g in range(len(self.T)):
            n = int(self.doc0[g + 1] - self.doc0[g])
            step = max(1, rows // int(self.T[g]))
            out += [(g, d, min(n, d + step)) for d in range(0, n, step)]
        return out


# -- the kernel ------------------------------------------------------------------------------------


_POOL: tuple[int, int, ThreadPoolExecutor] | None = None
_POOL_LOCK = threading.Lock()


def _single_thread() -> None:
    torch = _torch()
    if torch is not None:
        torch.set_num_threads(1)  # per thread with OpenMP: the caller's own setting is untouched


def _pool(n: int) -> ThreadPoolExecutor:
    """A pool of n workers, each running single-threaded torch ops; remade after a fork."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL[0] != n or _POOL[1] != os.getpid():
            _POOL = (n, os.getpid(), ThreadPoolExecutor(n, thread_name_prefix="lfm-maxsim", initializer=_single_thread))
        return _POOL[2]


def run_tasks(fn: Callable[[Any], None], tasks: list, threads: int) -> None:
    """fn(task) for every task, on the pool's `threads` single-threaded workers."""
    # Even one task goes to a (single-threaded) worker: in the caller's thread a small matmul opens a
    # parallel region over every core, and on a loaded machine such regions stall for a whole
    # scheduler tick (4-8 ms) waiting for a descheduled thread.
    if threads <= 1 or threading.current_thread().name.startswith("lfm-maxsim"):
        for t in tasks:
            fn(t)
        return
    for f in [_pool(threads).submit(fn, t) for t in tasks]:
        f.result()  # re-raises a worker's exception here


class Kernel:
    """Scores blocks of padded documents against a batch of queries, in one dtype."""

    def __init__(self, dtype: str, matmul: str):
        self.dtype, self.matmul = dtype, matmul
        self.torch = _torch() if matmul != "numpy" else None
        if self.torch is None:
            self.dtype, self.matmul = "float32", "numpy"

    @classmethod
    def for_scan(cls) -> "Kernel":
        p = cpu.plan()
        return cls(p.dtype, p.matmul)

    @classmethod
    def float32(cls) -> "Kernel":
        return cls("float32", cpu.plan().matmul)

    @property
    def threads(self) -> int:
        return self.torch.get_num_threads() if self.torch is not None else 1

    def prepare(self, queries: np.ndarray) -> Any:
        """(B, Q, D) float32 -> the (B * Q', D) operand, in this kernel's dtype.

        Fewer than MIN_COLUMNS query tokens in all are padded with zero tokens (Q' >= Q), which
        add exactly 0 to every score: oneDNN multiplies a (tokens, 128) block by 32 columns at
        twice the speed of 22 (a 22-token query scanned 22M document tokens/s, padded to 32 53M)."""
        if self.torch is not None and queries.shape[0] * queries.shape[1] < MIN_COLUMNS:
            B, Q, D = queries.shape
            queries = np.concatenate([queries, np.zeros((B, -(-MIN_COLUMNS // B) - Q, D), np.float32)], axis=1)
        flat = np.ascontiguousarray(queries.reshape(-1, queries.shape[-1]), dtype=np.float32)
        if self.torch is None:
            return flat
        if self.dtype == "int8":  # (D, B * Q') codes and (B * Q',) scales
            codes, scales = quantize_int8(flat)
            return self.torch.from_numpy(np.ascontiguousarray(codes.T)), self.torch.from_numpy(scales)
        q = self.torch.from_numpy(flat)
        return q.to(self.torch.bfloat16) if self.dtype == "bfloat16" else q

    def convert(self, block: Any) -> Any:
        """A (rows, D) block as stored (float16, float32, bfloat16 bits as uint16, or int8 codes and
        their scales as a pair) -> this dtype (for int8: a pair of tensors)."""
        torch = self.torch
        if torch is None:
            return np.asarray(block, dtype=np.float32)
        if self.dtype == "int8":
            codes, scales = block if isinstance(block, tuple) else quantize_int8(block)
            return torch.from_numpy(np.ascontiguousarray(codes)), torch.from_numpy(np.ascontiguousarray(scales))
        if block.dtype == np.uint16:  # bfloat16 bits
            t = torch.from_numpy(np.ascontiguousarray(block)).view(torch.bfloat16)
            return t if self.dtype == "bfloat16" else t.float()
        t = torch.from_numpy(np.ascontiguousarray(block))
        if self.dtype == "bfloat16":
            # float16 -> bfloat16 directly is a scalar loop in torch (5x slower than via float32).
            return (t.float() if t.dtype != torch.float32 else t).to(torch.bfloat16)
        return t.float() if t.dtype != torch.float32 else t

    def scores(self, block: Any, q: Any, m: int, T: int, B: int) -> np.ndarray:
        """block (m * T, D), q (B * Q, D) -> MaxSim (m, B) float32 (both as `convert` / `prepare` give them)."""
        if self.torch is None:
            s = block @ q.T  # (m*T, BQ)
            return s.reshape(m, T, -1).max(1).reshape(m, B, -1).sum(-1)
        torch = self.torch
        rows_in, scale = block if self.dtype == "int8" else (block, None)
        rows = rows_in.shape[0]
        main = rows - rows % GEMM_ROWS
        with torch.inference_mode():
            # float32 scores: a bfloat16 max runs as a scalar loop in torch; float32 is vectorised, and
            # the conversion touches B*Q numbers per token against the GEMM's B*Q*D multiply-adds.
            width = q[0].shape[1] if self.dtype == "int8" else q.shape[0]
            s = torch.empty((rows, width), dtype=torch.float32)  # (m*T, BQ)
            if main:
                s[:main] = self._gemm(rows_in[:main], q)
            if main < rows:  # the last rows, zero-padded to GEMM_ROWS (zero rows score 0, then dropped)
                tail = rows_in.new_zeros((GEMM_ROWS, rows_in.shape[1]))
                tail[: rows - main] = rows_in[main:]
                s[main:] = self._gemm(tail, q)[: rows - main]
            if scale is not None:
                s.mul_(scale[:, None])  # per document token, before the max
            best = s.view(m, T, -1).amax(1)  # (m, BQ)
            if scale is not None:
                best.mul_(q[1])  # per query token, after it
            return best.view(m, B, -1).sum(-1).numpy()

    def _gemm(self, block: Any, q: Any) -> Any:
        if self.dtype == "int8":
            return self.torch._int_mm(block, q[0])  # int32
        if self.matmul == "onednn":
            return self.torch.ops.mkldnn._linear_pointwise(block, q, None, "none", [], "")
        return block @ q.T


def _score_layout(
    queries: np.ndarray, layout: Layout, block: Callable[[int, int, int], np.ndarray], kernel: Kernel
) -> np.ndarray:
    """MaxSim (n, B) of queries (B, Q, D) against every document of `layout`, in input order;
    block(g, d0, d1) gives documents d0:d1 of group g as stored rows (m * T, D)."""
    B, Q, _ = queries.shape
    out = np.empty((layout.n_docs, B), dtype=np.float32)
    if layout.n_docs == 0:
        return out
    q = kernel.prepare(queries)

    def task(t: tuple[int, int, int]) -> None:
        g, d0, d1 = t
        T = int(layout.T[g])
        s = kernel.scores(kernel.convert(block(g, d0, d1)), q, d1 - d0, T, B)
        out[layout.order[layout.doc0[g] + d0 : layout.doc0[g] + d1]] = s

    run_tasks(task, layout.tasks(B * Q, kernel.threads), kernel.threads)
    return out


def maxsim_scan(queries: np.ndarray, layout: Layout, copy: Any, kernel: Kernel | None = None) -> np.ndarray:
    """MaxSim (n, B) against documents held in a scan copy: `copy` (layout.n_rows, D), the layout's
    padded rows (bfloat16 bits as uint16, or float16), or for an int8 kernel a pair of int8 codes
    (layout.n_rows, D) and their scales (layout.n_rows,); usually memory-mapped."""
    kernel = kernel or Kernel.for_scan()
    if isinstance(copy, tuple) != (kernel.dtype == "int8"):
        raise ValueError(f"a {kernel.dtype} kernel cannot scan this copy")

    def block(g: int, d0: int, d1: int) -> Any:
        rows = slice(layout.row0[g] + d0 * int(layout.T[g]), layout.row0[g] + d1 * int(layout.T[g]))
        return (copy[0][rows], copy[1][rows]) if isinstance(copy, tuple) else copy[rows]

    return _score_layout(queries, layout, block, kernel)


Tokens = np.ndarray | Callable[[np.ndarray], np.ndarray]


def maxsim_gather(queries: np.ndarray, tokens: Tokens, starts: np.ndarray, layout: Layout, kernel: Kernel) -> np.ndarray:
    """MaxSim (n, B) of the documents of `layout`, document i being tokens[starts[i]:starts[i] + length],
    each group's block gathered from the flat store (and converted) when it is scored. `tokens` may
    instead be a function from token indices (n,) to vectors (n, D): a compressed index decodes
    there, in the workers, so no decoded copy of all the documents is ever held."""

    def block(g: int, d0: int, d1: int) -> np.ndarray:
        idx = layout.gather_index(starts, g, d0, d1)
        return tokens(idx) if callable(tokens) else np.asarray(tokens[idx])

    return _score_layout(queries, layout, block, kernel)


def _maxsim_gathered(
    queries: np.ndarray, tokens: Tokens, starts: np.ndarray, lens: np.ndarray, kernel: Kernel
) -> np.ndarray:
    """Like maxsim_gather for documents given by starts and lengths; documents without tokens score 0."""
    out = np.zeros((len(lens), queries.shape[0]), dtype=np.float32)
    keep = np.flatnonzero(lens > 0)
    if len(keep):
        out[keep] = maxsim_gather(queries, tokens, starts[keep], Layout.from_lengths(lens[keep]), kernel)
    return out


def maxsim_packed(queries: np.ndarray, tokens: Tokens, offsets: np.ndarray, kernel: Kernel | None = None) -> np.ndarray:
    """MaxSim (n, B) of queries (B, Q, D) against every document of a flat store (offsets (n + 1,)),
    or of a function from token indices to vectors (see maxsim_gather). Float32 unless `kernel`
    says otherwise; documents without tokens score 0."""
    offsets = np.asarray(offsets, dtype=np.int64)
    return _maxsim_gathered(queries, tokens, offsets[:-1], np.diff(offsets), kernel or Kernel.float32())


def maxsim_rows(queries: np.ndarray, tokens: np.ndarray, offsets: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Float32 MaxSim (len(rows), B) for some documents of a flat store; rescores a shortlist."""
    rows = np.asarray(rows, dtype=np.int64)
    offsets = np.asarray(offsets, dtype=np.int64)
    return _maxsim_gathered(queries, tokens, offsets[rows], offsets[rows + 1] - offsets[rows], Kernel.float32())


def maxsim(query: np.ndarray, documents: Sequence[np.ndarray]) -> np.ndarray:
    """Float32 MaxSim of one query (Q, D) against each document (T_i, D): scores (N,); empty documents score 0."""
    q = np.asarray(query, dtype=np.float32)
    if len(documents) == 0:
        return np.zeros(0, dtype=np.float32)
    docs = [np.asarray(d, dtype=np.float32).reshape(-1, q.shape[1]) for d in documents]
    offsets = np.concatenate([[0], np.cumsum([len(d) for d in docs])]).astype(np.int64)
    flat = np.concatenate(docs) if offsets[-1] else np.zeros((0, q.shape[1]), np.float32)
    return maxsim_packed(q[None], flat, offsets)[:, 0]
