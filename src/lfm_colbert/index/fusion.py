"""Fusing a semantic and a lexical ranking of one query into one: reciprocal rank fusion, or a blend
of min-max normalised scores.

Each input is a ranked list of (key, score), best first, the top `window` of that side.

Reciprocal rank fusion (the default; Cormack et al. 2009), rank r counted from 1:
    fused(d) = 1 / (RRF_K + r_semantic(d)) + 1 / (RRF_K + r_lexical(d))
    (a side on which d is not in the window adds nothing)

Blend, with alpha in [0, 1] weighting the semantic side:
    norm_side(d) = (s(d) - min_side) / (max_side - min_side)    over that side's window
                   (1 when every score of the side is equal; 0 when d is not in that side's window)
    fused(d) = alpha * norm_semantic(d) + (1 - alpha) * norm_lexical(d)

Ties in the fused score go to the better rank on the heavier side (semantic for RRF and alpha >= 0.5),
then on the other side, then the key; so alpha=1 ranks exactly as semantic search and alpha=0
exactly as lexical search (followed, for alpha=0, by semantic hits that hold no query term).
"""

from __future__ import annotations

from typing import Hashable, Sequence

RRF_K = 60


def _ranks(hits: Sequence[tuple[Hashable, float]]) -> dict[Hashable, int]:
    return {key: r for r, (key, _) in enumerate(hits, 1)}


def _order(fused: dict[Hashable, float], sem: dict, lex: dict, k: int, lexical_first: bool = False) -> list[tuple[Hashable, float]]:
    far = float("inf")
    first, second = (lex, sem) if lexical_first else (sem, lex)
    keys = sorted(fused, key=lambda d: (-fused[d], first.get(d, far), second.get(d, far), str(d)))
    return [(d, fused[d]) for d in keys[:k]]


def rrf(semantic: Sequence[tuple[Hashable, float]], lexical: Sequence[tuple[Hashable, float]], k: int,
        rrf_k: int = RRF_K) -> list[tuple[Hashable, float]]:
    """Top-k (key, fused score) by reciprocal rank fusion."""
    sem, lex = _ranks(semantic), _ranks(lexical)
    fused: dict[Hashable, float] = {}
    for ranks in (sem, lex):
        for d, r in ranks.items():
            fused[d] = fused.get(d, 0.0) + 1.0 / (rrf_k + r)
    return _order(fused, sem, lex, k)


def _normalised(hits: Sequence[tuple[Hashable, float]]) -> dict[Hashable, float]:
    if not hits:
        return {}
    scores = [s for _, s in hits]
    lo, hi = min(scores), max(scores)
    return {d: (s - lo) / (hi - lo) if hi > lo else 1.0 for d, s in hits}


def blend(semantic: Sequence[tuple[Hashable, float]], lexical: Sequence[tuple[Hashable, float]], k: int,
          alpha: float) -> list[tuple[Hashable, float]]:
    """Top-k (key, fused score) by the alpha-weighted sum of min-max normalised scores."""
    ns, nl = _normalised(semantic), _normalised(lexical)
    fused = {d: alpha * ns.get(d, 0.0) + (1 - alpha) * nl.get(d, 0.0) for d in {*ns, *nl}}
    return _order(fused, _ranks(semantic), _ranks(lexical), k, lexical_first=alpha < 0.5)
