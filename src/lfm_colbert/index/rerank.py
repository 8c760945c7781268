"""Second-stage ranking with no index: score given documents against a query with MaxSim."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from lfm_colbert.errors import InputError
from lfm_colbert.scoring import maxsim
from lfm_colbert.tokenization import check_texts


@dataclass
class Ranked:
    """A reranked document: its position in the input list, its MaxSim score, its text."""

    index: int
    score: float
    text: str


def rerank(query: str, documents: Sequence[str], model: Any = None, k: int | None = None, batch_size: int = 32) -> list[Ranked]:
    """Order `documents` by MaxSim against `query`, best first (top `k` if given).

    `model` is a loaded ColBERT, a hub id / local path, or None for the default model.
    """
    if not isinstance(query, str) or not query.strip():
        raise InputError("a query must be a non-empty string")
    if isinstance(documents, str):
        raise InputError("rerank() takes a list of documents, not one string")
    try:
        docs = list(documents)
    except TypeError:  # None, a number
        raise InputError(f"rerank() takes a list of documents, not {type(documents).__name__}") from None
    docs = check_texts(docs) if docs else []  # one error naming every empty or non-string text
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k <= 0):
        raise InputError(f"k must be a positive integer, not {k!r}")
    if not docs:
        return []
    if model is None or isinstance(model, str):
        from lfm_colbert.encoder import ColBERT

        model = ColBERT(model=model)
    q = model.encode([query], is_query=True, show_progress_bar=False)[0]  # (Q, D)
    d = model.encode(docs, is_query=False, batch_size=batch_size, show_progress_bar=False)
    scores = maxsim(q, d)
    order = sorted(range(len(docs)), key=lambda i: (-float(scores[i]), i))
    return [Ranked(i, float(scores[i]), docs[i]) for i in order[:k]]
