"""bench/search.py's corpora, cached under .bench/ (LFM_BENCH_CACHE moves it): `minilm` (real token
states, bench/minilm_corpus.py) and `clustered` (synthetic). Each is a float16 file read memory-mapped."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

import minilm_corpus

CACHE = Path(os.environ.get("LFM_BENCH_CACHE") or Path(__file__).resolve().parents[1] / ".bench")


def _clustered(n: int, n_queries: int = 200) -> Path:
    """synthetic_vectors.clustered_documents, streamed to a float16 file (the same draws, in order)."""
    from lfm_colbert.index.synthetic_vectors import queries_for

    out = CACHE / "clustered" / f"corpus-{n}"
    if (out / "meta.json").exists():
        return out
    tmp = out.with_name(out.name + f".tmp-{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    dim, n_clusters, noise, topics = 128, 4096, 0.4, 4
    centres = rng.standard_normal((n_clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    lens = rng.integers(60, 141, size=n)
    vec = np.lib.format.open_memmap(tmp / "vectors.npy", mode="w+", dtype=np.float16, shape=(int(lens.sum()), dim))
    pos = 0
    for L in lens:
        own = rng.choice(n_clusters, size=topics, replace=False)
        v = centres[rng.choice(own, size=L)] + noise * rng.standard_normal((L, dim)).astype(np.float32) / np.sqrt(dim)
        vec[pos : pos + L] = v / np.linalg.norm(v, axis=1, keepdims=True)
        pos += L
    vec.flush()
    offsets = np.concatenate([[0], np.cumsum(lens)])

    class Docs:  # what queries_for reads: len() and documents by position
        def __len__(self) -> int:
            return n

        def __getitem__(self, i: int) -> np.ndarray:
            return np.asarray(vec[offsets[i] : offsets[i + 1]], dtype=np.float32)

    qs = queries_for(Docs(), n_queries)  # 32 tokens each
    np.save(tmp / "queries.npy", np.stack(qs).astype(np.float16))
    np.save(tmp / "query_lens.npy", np.full(len(qs), 32, np.int32))
    np.save(tmp / "doclens.npy", lens.astype(np.int32))
    (tmp / "meta.json").write_text(json.dumps({"docs": n, "tokens": int(lens.sum())}))
    del vec
    os.replace(tmp, out)
    return out


def minilm_path(n: int) -> Path:
    """The minilm corpus that serves n documents: the smallest cached one holding at least n (its
    first n passages, a random subset), else one built for 10k passages (n <= 10k) or max(n, 100k)."""
    cache = minilm_corpus.cache_dir()
    sizes = sorted(int(p.name.split("-")[1]) for p in cache.glob("corpus-*") if (p / "meta.json").exists())
    fit = [s for s in sizes if s >= n]
    return minilm_corpus.build(fit[0] if fit else (10_000 if n <= 10_000 else max(n, 100_000)), cache)


def load_corpus(name: str, n: int) -> tuple[np.ndarray, np.ndarray, list[np.ndarray], str]:
    """(vectors (N_tok, 128) float16 memory-mapped, offsets, queries, description)."""
    if name == "minilm":
        path = minilm_path(n)
        vectors, offsets, queries, meta = minilm_corpus.load(path, n)
        note = (f"all-MiniLM-L6-v2 token states of real sentences (XQuAD-R, Tatoeba; each reused ~{meta['reuse']:.0f}x "
                f"at {meta['docs']} passages, {path.name}), PCA 128-d ({meta['pca_explained_variance']:.0%} of variance), unit norm")
    else:
        vectors, offsets, queries, _ = minilm_corpus.load(_clustered(n), n)
        note = "synthetic clustered (4096 clusters, 4 topics a document, noise 0.4)"
    if len(offsets) - 1 < n:
        raise SystemExit(f"{name}: the cached corpus holds only {len(offsets) - 1} documents")
    return vectors, offsets, queries, note


def doc_views(vectors: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    return [vectors[a:b] for a, b in zip(offsets[:-1], offsets[1:])]
