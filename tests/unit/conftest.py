"""Index test fixtures: a seeded clustered corpus of 1,500 documents and its exact top 10."""

from __future__ import annotations

import pytest

from lfm_colbert.index import Index
from lfm_colbert.index.synthetic_vectors import clustered_documents, queries_for

VECTORS_MODEL = {"model_id": "vectors-only", "variant": "none", "dim": 128, "fingerprint": "test"}


@pytest.fixture(scope="session")
def clustered_corpus():
    """(documents, 30 queries): about 37k tokens in 512 clusters."""
    docs, _ = clustered_documents(1500, n_clusters=512, tokens=(10, 40), noise=0.4, seed=0)
    return docs, queries_for(docs, 30)


@pytest.fixture(scope="session")
def clustered_exact(tmp_path_factory, clustered_corpus):
    """Exact top-10 hits of each query in `clustered_corpus` (ids are the document numbers)."""
    docs, queries = clustered_corpus
    index = Index(tmp_path_factory.mktemp("exact") / "idx", VECTORS_MODEL)
    index.add_vectors(docs, ids=[str(i) for i in range(len(docs))])
    return index.search_vectors(queries, k=10)
