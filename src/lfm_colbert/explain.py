"""Explain a MaxSim score: which document token each query token matched, and what it added.

MaxSim sums, over query tokens, each one's best similarity to any document token. So a score
splits exactly into per-query-token contributions, each tied to one document token (the argmax)
and, through the tokenizer's offsets, to a span of the document's text. A single-vector retriever
has nothing like it; the demo page highlights these spans.

    >>> from lfm_colbert.explain import explain_texts
    >>> [e] = explain_texts(model, "¿Dónde viven los pingüinos?", ["Penguins live in the south."])
    >>> e.score, [(m.query_token, m.doc_text, round(m.score, 2)) for m in e.matches[:3]]
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

# Labels of vectors that carry no text of their own (their span is (-1, -1)).
BOS_LABEL = "[BOS]"
EXPANSION_LABEL = "[PAD]"  # query expansion: pad tokens whose vectors still score


@dataclass
class TokenMatch:
    """One query token's share of a MaxSim score.

    query_token: the token's text in the query, or "[BOS]" / "[Q]" / "[PAD]" (query expansion).
    kind: "text", "special" (BOS, the prefix) or "expansion".
    doc_token: row of the matched vector among the document's vectors.
    query_span / doc_span: [start, end) character offsets without surrounding whitespace (None when
        the token has no text, or the document's vectors did not come from this text).
    score: the similarity of the pair; the matches' scores sum to the MaxSim score.
    """

    query_token: str
    kind: str
    query_span: tuple[int, int] | None
    doc_token: int
    doc_text: str | None
    doc_span: tuple[int, int] | None
    score: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Explanation:
    """A document's MaxSim score split over the query's tokens (`matches`, in query token order)."""

    score: float
    matches: list[TokenMatch] = field(default_factory=list)

    def highlights(self, kinds: Sequence[str] = ("text", "expansion")) -> list[tuple[int, int, float]]:
        """Document spans matched by query tokens of `kinds`, with the summed score of the matches
        that landed there: [(start, end, score)], in text order."""
        sums: dict[tuple[int, int], float] = {}
        for m in self.matches:
            if m.doc_span is not None and m.kind in kinds:
                sums[m.doc_span] = sums.get(m.doc_span, 0.0) + m.score
        return [(s, e, v) for (s, e), v in sorted(sums.items())]

    def to_dict(self) -> dict[str, Any]:
        return {"score": self.score, "matches": [m.to_dict() for m in self.matches]}


def _trim(text: str, start: int, end: int) -> tuple[int, int] | None:
    """A token span without the whitespace the tokenizer counts in it (BPE's leading space)."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end) if end > start else None


def _label(text: str, row: int, span: np.ndarray, prefix: str) -> tuple[str, str, tuple[int, int] | None]:
    """(label, kind, trimmed span) of one vector's token."""
    start, end = int(span[0]), int(span[1])
    if start >= 0:
        trimmed = _trim(text, start, end)
        return (text[trimmed[0] : trimmed[1]] if trimmed else text[start:end]), "text", trimmed
    if row == 0:
        return BOS_LABEL, "special", None
    if row == 1:
        return prefix.strip(), "special", None
    return EXPANSION_LABEL, "expansion", None


def explain(
    query_vectors: np.ndarray,
    doc_vectors: np.ndarray,
    query: str,
    query_spans: np.ndarray,
    document: str | None = None,
    doc_spans: np.ndarray | None = None,
    query_prefix: str = "[Q] ",
) -> Explanation:
    """Explain the MaxSim score of query vectors (Q, D) against document vectors (T, D).

    `query_spans` / `doc_spans` are `ColBERT.token_spans` of the two texts. Document spans are used
    only when they line up with the vectors (one span per vector): vectors stored from another text
    or another model still get token rows and scores, without text.
    """
    q = np.asarray(query_vectors, dtype=np.float32)
    d = np.asarray(doc_vectors, dtype=np.float32)
    if q.ndim != 2 or d.ndim != 2 or q.shape[1] != d.shape[1] or len(d) == 0:
        raise ValueError(f"need (Q, D) query and (T >= 1, D) document vectors, got {q.shape} and {d.shape}")
    if len(query_spans) != len(q):
        raise ValueError(f"{len(query_spans)} query spans for {len(q)} query vectors")
    sims = q @ d.T  # (Q, T)
    best = sims.argmax(axis=1)  # (Q,): MaxSim's argmax
    scores = sims[np.arange(len(q)), best]  # (Q,)
    spans_ok = document is not None and doc_spans is not None and len(doc_spans) == len(d)
    matches = []
    for s in range(len(q)):
        label, kind, q_span = _label(query, s, query_spans[s], query_prefix)
        t = int(best[s])
        doc_text = doc_span = None
        if spans_ok:
            start, end = int(doc_spans[t][0]), int(doc_spans[t][1])
            if start >= 0:
                doc_span = _trim(document, start, end)
                doc_text = document[doc_span[0] : doc_span[1]] if doc_span else document[start:end]
        matches.append(TokenMatch(label, kind, q_span, t, doc_text, doc_span, float(scores[s])))
    return Explanation(float(scores.sum()), matches)


def explain_texts(
    model: Any,
    query: str,
    documents: Sequence[str],
    doc_vectors: Sequence[np.ndarray] | None = None,
    query_vectors: np.ndarray | None = None,
) -> list[Explanation]:
    """Explain `query` against each of `documents` with a loaded `ColBERT`: the documents are encoded
    here unless their vectors are given (an index's stored vectors, `Index.vectors(ids)`)."""
    if query_vectors is None:
        query_vectors = model.encode([query], is_query=True, show_progress_bar=False)[0]
    if doc_vectors is None:
        doc_vectors = model.encode(list(documents), show_progress_bar=False)
    q_spans = model.token_spans([query], is_query=True)[0]
    d_spans = model.token_spans(list(documents)) if len(documents) else []
    prefix = model.settings.query_prefix
    return [explain(query_vectors, v, query, q_spans, text, spans, prefix)
            for v, text, spans in zip(doc_vectors, documents, d_spans)]
