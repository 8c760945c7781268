"""MaxSim late-interaction scoring on numpy arrays.

score(q, d) = sum over query tokens s of max over document tokens t of <q_s, d_t>
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


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
