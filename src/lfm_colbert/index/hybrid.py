"""Lexical and hybrid search: BM25 over the catalog's postings (lfm_colbert.index.lexical), and its
fusion with MaxSim search (lfm_colbert.index.fusion), both sides answering from one pinned state.

    mode="semantic"  MaxSim only (Index.search's default; the score is the MaxSim score)
    mode="lexical"   BM25 only; the score is the BM25 score; documents holding no query term are
                     not returned (so fewer than k hits can come back), nor documents without text
    mode="hybrid"    each side ranks its top max(k, WINDOW) documents under the same filter; they
                     are fused by reciprocal rank fusion (alpha=None) or by the alpha-weighted blend
                     of min-max normalised scores; the score is the fused score
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from lfm_colbert.errors import InputError
from lfm_colbert.index import fusion
from lfm_colbert.index.lexical import SHIFT, Lexicon, slot_key
from lfm_colbert.index.reader import Hit, Reader

MODES = ("semantic", "lexical", "hybrid")
WINDOW = 100  # candidates per side before fusion


def check(mode: Any, alpha: Any) -> float | None:
    """The mode and alpha, checked; alpha as a float (None: reciprocal rank fusion)."""
    if mode not in MODES:
        raise InputError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if alpha is None:
        return None
    if mode != "hybrid":
        raise InputError(f"alpha weights the two sides of mode='hybrid'; it does not apply to mode={mode!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha) or not 0 <= alpha <= 1:
        raise InputError(f"alpha must be a number from 0 (lexical only) to 1 (semantic only), not {alpha!r}")
    return float(alpha)


def search(
    reader: Reader,
    lexicon: Lexicon,
    queries: Sequence[str],
    k: int,
    filter: Mapping[str, Any] | None,
    mode: str,
    alpha: float | None,
    encode: Callable[[Sequence[str]], np.ndarray],
) -> list[list[Hit]]:
    """Top-k hits per query for mode "lexical" or "hybrid", from one committed state."""
    depth = k if mode == "lexical" else max(k, WINDOW)
    with reader.snapshot() as state:
        lexicon.check(state)  # before the model loads: an index without postings says how to build them
        allowed = reader.catalog.filtered_slots(filter, state.generation) if filter is not None else None
        lexical = lexicon.rank(state, queries, depth, allowed)
        if mode == "lexical":
            fused = lexical
        else:
            raw = reader.rank(state, encode(queries), depth, filter)
            semantic = [[(slot_key(state.order[p], row), s) for p, row, s in hits] for hits in raw]
            fused = [fusion.rrf(s, x, k) if alpha is None else fusion.blend(s, x, k, alpha)
                     for s, x in zip(semantic, lexical)]
        slots = [(key >> SHIFT, key & ((1 << SHIFT) - 1)) for hits in fused for key, _ in hits]
        docs = iter(reader.catalog.lookup(slots))
    return [[Hit(d[0], float(score), d[1], d[2]) for (_, score), d in zip(hits, docs)] for hits in fused]
