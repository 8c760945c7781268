"""Search results by source document: the passages of one document collapsed into one hit.

    >>> search_documents(index, "where do penguins live?", k=5)
    [DocumentHit(id='corpus/penguins.md', score=27.4, passage=Hit(id='corpus/penguins.md#3', ...), passages=2)]

`lfm-colbert index` splits long documents into passages `ID#N` whose parent is the document; a
document's score is its best passage's (MaxSim over passages, as ColBERT retrieval over passages
does). Documents stored whole are their own parent.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

from lfm_colbert.errors import InputError
from lfm_colbert.index import Hit


@dataclass
class DocumentHit:
    """A document found: its id, its best passage's score, that passage, and how many of its
    passages were among the passages looked at."""

    id: str
    score: float
    passage: Hit
    passages: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def group_hits(hits: Sequence[Hit], parents: Mapping[str, str | None], k: int) -> list[DocumentHit]:
    """Hits (best first) collapsed by parent document: the top `k` documents, each with its best passage."""
    out: dict[str, DocumentHit] = {}
    for h in hits:
        doc = parents.get(h.id) or h.id
        if doc in out:
            out[doc].passages += 1
        else:
            out[doc] = DocumentHit(doc, h.score, h)
    return list(out.values())[:k]


def search_documents(index: Any, query: str | Sequence[str], k: int = 10, filter: Mapping[str, Any] | None = None,
                     max_passages: int | None = None) -> list[DocumentHit] | list[list[DocumentHit]]:
    """The top `k` documents for a query (or a list per query), ranked by their best passage.

    Looks at 4k passages first, and at twice as many each round while a query has fewer than k
    documents among them and more exist (up to `max_passages`, default every passage)."""
    single = isinstance(query, str)
    queries = [query] if single else list(query)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InputError(f"k must be a positive integer, not {k!r}")
    if not queries or any(not isinstance(q, str) or not q.strip() for q in queries):
        raise InputError("queries must be non-empty strings")
    limit = max_passages or max(len(index), 1)
    vectors = index.model.encode(queries, is_query=True, show_progress_bar=False)  # encoded once for every round
    parents: dict[str, str | None] = {}
    results: list[list[DocumentHit] | None] = [None] * len(queries)
    depth = min(4 * k, limit)
    while True:
        todo = [i for i, r in enumerate(results) if r is None]
        found = index.search_vectors([vectors[i] for i in todo], k=depth, filter=filter)
        new = sorted({h.id for hits in found for h in hits} - parents.keys())
        parents.update((i, d.parent if d is not None else None) for i, d in zip(new, index.get(new)))
        for i, hits in zip(todo, found):
            docs = group_hits(hits, parents, k)
            if len(docs) >= k or len(hits) < depth or depth >= limit:  # enough, or nothing more to find
                results[i] = docs
        if all(r is not None for r in results):
            break
        depth = min(2 * depth, limit)
    return results[0] if single else results  # type: ignore[return-value]
