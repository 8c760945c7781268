"""Clustered random token vectors that look enough like ColBERT output to test and benchmark search.

Token embeddings of real text cluster (by word sense and topic); uniform random vectors do not,
which would make centroid-based search look either trivially easy or hopeless.
"""

from __future__ import annotations

import numpy as np


def clustered_documents(
    n_docs: int, dim: int = 128, n_clusters: int = 1024, tokens: tuple[int, int] = (20, 60),
    noise: float = 0.6, topics: int = 4, seed: int = 0,
) -> tuple[list[np.ndarray], np.ndarray]:
    """Documents as lists of unit vectors drawn around a few of `n_clusters` centres; returns (docs, centres)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    lens = rng.integers(tokens[0], tokens[1] + 1, size=n_docs)
    docs = []
    for n in lens:
        own = rng.choice(n_clusters, size=topics, replace=False)
        v = centres[rng.choice(own, size=n)] + noise * rng.standard_normal((n, dim)).astype(np.float32) / np.sqrt(dim)
        docs.append((v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32))
    return docs, centres


def queries_for(docs: list[np.ndarray], n_queries: int, q_tokens: int = 32, noise: float = 0.8, seed: int = 1) -> list[np.ndarray]:
    """Queries made by perturbing tokens of random documents (so each has a few clearly relevant ones)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in rng.choice(len(docs), size=n_queries, replace=len(docs) < n_queries):
        d = docs[i]
        v = d[rng.integers(0, len(d), size=q_tokens)]
        v = v + noise * rng.standard_normal(v.shape).astype(np.float32) / np.sqrt(v.shape[1])
        out.append((v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32))
    return out
