"""MaxSim late-interaction scoring on numpy arrays, plus the chunked kernel the index scans with.

score(q, d) = sum over query tokens s of max over document tokens t of <q_s, d_t>

Documents are stored flat: all token vectors in one (N_tokens, D) array and an offsets array
(n_docs + 1,) so that document i is tokens[offsets[i]:offsets[i+1]]. To scan them fast, documents
are sorted by length and cut into buckets of similar length, each padded into a dense
(n, T, D) block by repeating the document's own last token; a repeated token cannot change a
max, so padded scores are exact and one batched matmul scores a whole bucket.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

# Tokens per bucket: bounds the (tokens, queries x query tokens) score block held at once.
BUCKET_TOKENS = 1 << 17


def maxsim(query: np.ndarray, documents: Sequence[np.ndarray]) -> np.ndarray:
    """MaxSim of one query (Q, D) against each document (T_i, D); returns float32 scores (N,)."""
    q = np.asarray(query, dtype=np.float32)
    scores = np.empty(len(documents), dtype=np.float32)
    for i, doc in enumerate(documents):
        d = np.asarray(doc, dtype=np.float32)
        if d.shape[0] == 0:
            scores[i] = 0.0
            continue
        scores[i] = (q @ d.T).max(axis=1).sum()  # (Q, T) -> (Q,) -> ()
    return scores


def _torch() -> Any:
    try:
        import torch
    except ImportError:  # numpy fallback: same results, about half the speed
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


@dataclass
class Buckets:
    """Documents regrouped for scanning: blocks[j] (n_j, T_j, D) scores into positions[j] (n_j,)."""

    positions: list[np.ndarray]
    blocks: list[Any]  # torch bf16 tensors, or float32 numpy arrays without torch
    n_docs: int

    @property
    def nbytes(self) -> int:
        return int(sum(b.numel() * b.element_size() if hasattr(b, "numel") else b.nbytes for b in self.blocks))


def build_buckets(
    tokens: np.ndarray, offsets: np.ndarray, rows: np.ndarray | None = None, max_tokens: int = BUCKET_TOKENS
) -> Buckets:
    """Pack documents `rows` (default all) of a flat store into length-sorted padded blocks.

    Block j's scores belong to output positions `positions[j]` (indices into `rows`).
    """
    torch = _torch()
    offsets = np.asarray(offsets, dtype=np.int64)
    rows = np.arange(len(offsets) - 1) if rows is None else np.asarray(rows, dtype=np.int64)
    lens = offsets[rows + 1] - offsets[rows]
    if len(rows) and lens.min() <= 0:
        raise ValueError("documents must have at least one token")
    order = np.argsort(lens, kind="stable")
    positions, blocks = [], []
    start = 0
    while start < len(order):
        # Grow the bucket while its padded size (n * longest) stays under the token budget.
        end = start + 1
        longest = int(lens[order[start]])
        while end < len(order) and (end - start + 1) * int(lens[order[end]]) <= max_tokens:
            longest = int(lens[order[end]])
            end += 1
        pos = order[start:end]
        ar = np.arange(longest)
        idx = offsets[rows[pos]][:, None] + np.minimum(ar[None, :], lens[pos][:, None] - 1)  # (n, T)
        block = np.asarray(tokens[idx.reshape(-1)], dtype=np.float32).reshape(len(pos), longest, -1)  # (n, T, D)
        if torch is not None:
            blocks.append(torch.from_numpy(block).to(torch.bfloat16))
        else:
            blocks.append(block)
        positions.append(pos)
        start = end
    return Buckets(positions, blocks, len(rows))


def maxsim_buckets(queries: np.ndarray, buckets: Buckets, query_group: int = 16) -> np.ndarray:
    """Scores (n_docs, B) of queries (B, Q, D) against every document in `buckets`."""
    torch = _torch()
    B, Q, D = queries.shape
    out = np.empty((buckets.n_docs, B), dtype=np.float32)
    for g in range(0, B, query_group):
        qg = queries[g : g + query_group]  # (b, Q, D)
        b = qg.shape[0]
        flat = qg.reshape(b * Q, D)
        if torch is not None:
            qb = torch.from_numpy(np.ascontiguousarray(flat)).to(torch.bfloat16)  # (bQ, D)
            with torch.inference_mode():
                for pos, block in zip(buckets.positions, buckets.blocks):
                    n, T, _ = block.shape
                    # Scores laid out (bQ, n*T) so the max over a document's T tokens runs along
                    # contiguous memory: a strided max over T cost as much as the matmul itself.
                    s = (qb @ block.view(n * T, D).T).view(b * Q, n, T).amax(-1)  # (bQ, n), exact in bf16
                    out[pos, g : g + b] = s.float().view(b, Q, n).sum(1).T.numpy()  # (n, b)
        else:
            for pos, block in zip(buckets.positions, buckets.blocks):
                n, T, _ = block.shape
                s = (block.reshape(n * T, D) @ flat.T).reshape(n, T, b, Q).max(1)  # (n, b, Q)
                out[pos, g : g + b] = s.sum(-1)
    return out


def token_ranges(offsets: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Token indices of documents `rows` laid end to end, and where each document starts in that list."""
    lens = offsets[rows + 1] - offsets[rows]
    starts = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lens, out=starts[1:])
    idx = np.repeat(offsets[rows] - starts[:-1], lens) + np.arange(starts[-1])
    return idx, starts


def maxsim_rows(queries: np.ndarray, tokens: np.ndarray, offsets: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Full-precision (float32) scores (len(rows), B) for a few rows of a flat store; used to rescore a shortlist."""
    B, Q, D = queries.shape
    rows = np.asarray(rows, dtype=np.int64)
    out = np.zeros((len(rows), B), dtype=np.float32)
    if len(rows) == 0:
        return out
    idx, starts = token_ranges(offsets, rows)
    d = np.asarray(tokens[idx], dtype=np.float32)  # (n_tok, D), one gather
    flat = np.ascontiguousarray(queries.reshape(B * Q, D))
    torch = _torch()
    # One matmul for all rows; on torch when present (numpy BLAS right after torch work contends for cores).
    s = (torch.from_numpy(d) @ torch.from_numpy(flat).T).numpy() if torch is not None else d @ flat.T  # (n_tok, BQ)
    return np.maximum.reduceat(s, starts[:-1], axis=0).reshape(len(rows), B, Q).sum(-1)
