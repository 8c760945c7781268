"""Exact search: brute-force MaxSim over every live document's half-precision token vectors.

The scan runs on length-bucketed blocks (see lfm_colbert.scoring) in bfloat16 on torch, which
is the fastest CPU path and uses every core; the shortlist it returns is then rescored in float32
from the float16 store, so reported scores and the final order are full precision.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lfm_colbert.scoring import Buckets, build_buckets, maxsim_buckets, maxsim_rows

# Below this many allowed documents, a filtered search scores them one by one instead of scanning.
SMALL_SUBSET = 2048


@dataclass
class ExactSegment:
    tokens: np.ndarray  # (N_tok, D) float16, usually memory-mapped
    offsets: np.ndarray  # (n_docs + 1,) int64
    alive: np.ndarray  # (n_docs,) bool
    _buckets: Buckets | None = field(default=None, repr=False)

    def buckets(self) -> Buckets:
        if self._buckets is None:
            self._buckets = build_buckets(self.tokens, self.offsets, np.flatnonzero(self.alive))
        return self._buckets


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
            scores = maxsim_rows(queries, seg.tokens, seg.offsets, rows)  # (n, B) exact already
        else:
            live = np.flatnonzero(seg.alive)
            scores = maxsim_buckets(queries, seg.buckets())  # (n_live, B)
            if len(rows) != len(live):
                scores = scores[mask[live]]
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
        # Rescore the shortlist in float32 so scores do not carry bfloat16 rounding.
        final = np.empty(len(rows), dtype=np.float32)
        for si in np.unique(seg_idx):
            m = seg_idx == si
            seg = segments[si]
            final[m] = maxsim_rows(queries[b : b + 1], seg.tokens, seg.offsets, rows[m])[:, 0]
        order = np.lexsort((rows, seg_idx, -final))[:k]
        results.append([(int(seg_idx[i]), int(rows[i]), float(final[i])) for i in order])
    return results
