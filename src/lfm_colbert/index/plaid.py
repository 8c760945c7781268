"""Compressed storage and search, PLAID-style.

Each token vector v is stored as the id of its nearest k-means centroid c (2 bytes while there
are at most 65,536 centroids) plus the residual v - c quantized per dimension to 2 or 4 bits
(32 or 64 bytes for 128 dimensions): 34 or 66 bytes per token instead of 256 in float16.

Search, for one query (Q, D):
  1. score the query against all centroids,                       S (Q, K)
  2. candidate generation: probe the `nprobe` best centroids per query token through the
     inverted lists (centroid -> documents) and give each document a rough score from the probed
     centroids it contains (a query token that hits none scores its weakest probed centroid),
  3. centroid interaction: for the best `ndocs` documents, approximate MaxSim with every token
     replaced by its centroid, S[:, codes],
  4. decompress the best `ndocs // 4` and rank them by exact MaxSim on the decoded vectors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lfm_colbert.errors import InputError
from lfm_colbert.index.store import load_npy, save_npy


def default_centroids(n_tokens: int) -> int:
    """A power of two near 4 * sqrt(tokens): ~4k centroids for 1M tokens, ~8k for 10M (k-means stays minutes on a CPU)."""
    k = 2 ** int(math.floor(math.log2(max(1.0, 4.0 * math.sqrt(n_tokens)))))
    return int(max(1, min(k, 1 << 16, n_tokens)))


def _faiss():
    try:
        import faiss
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise InputError("compressed indexes need faiss for k-means: pip install 'lfm-colbert[index]'") from exc
    return faiss


@dataclass
class Codec:
    """Centroids (K, D) and per-dimension residual buckets: cutoffs (D, 2^b - 1), weights (D, 2^b)."""

    centroids: np.ndarray
    cutoffs: np.ndarray
    weights: np.ndarray
    nbits: int

    FILES = ("centroids.npy", "cutoffs.npy", "weights.npy")

    @property
    def dim(self) -> int:
        return int(self.centroids.shape[1])

    @property
    def code_dtype(self) -> type:
        return np.uint16 if len(self.centroids) <= 1 << 16 else np.int32

    @property
    def bytes_per_token(self) -> int:
        return np.dtype(self.code_dtype).itemsize + self.dim * self.nbits // 8

    @classmethod
    def train(
        cls, vectors: np.ndarray, nbits: int, n_centroids: int | None = None, seed: int = 0, niter: int = 20
    ) -> "Codec":
        """Fit centroids with faiss k-means on (a sample of) `vectors` (N, D), then residual quantiles."""
        if nbits not in (2, 4):
            raise InputError(f"nbits must be 2 or 4, not {nbits}")
        x = np.ascontiguousarray(vectors, dtype=np.float32)
        n, dim = x.shape
        if dim % 8:
            raise InputError(f"compressed indexes need a dimension divisible by 8, not {dim}")
        k = int(n_centroids or default_centroids(n))
        if not 1 <= k <= n:
            raise InputError(f"cannot train {k} centroids on {n} token vectors")
        rng = np.random.default_rng(seed)
        # faiss would subsample to 256 points per centroid anyway; 64 is plenty and 4x faster.
        sample = x[rng.choice(n, size=min(n, 64 * k), replace=False)] if n > 64 * k else x
        km = _faiss().Kmeans(dim, k, niter=niter, seed=seed, spherical=True, verbose=False, max_points_per_centroid=64)
        km.train(sample)
        centroids = np.ascontiguousarray(km.centroids, dtype=np.float32)  # (K, D)
        codec = cls(centroids, np.zeros((dim, 0), np.float32), np.zeros((dim, 1), np.float32), nbits)
        held = sample[rng.choice(len(sample), size=min(len(sample), 1 << 16), replace=False)]
        resid = held - centroids[codec.assign(held)]  # (n, D)
        codec.cutoffs, codec.weights = _lloyd_max(resid, 1 << nbits)
        return codec

    def assign(self, vectors: np.ndarray, chunk: int = 1 << 16) -> np.ndarray:
        """Nearest centroid by inner product for each row of (N, D)."""
        faiss = _faiss()
        index = faiss.IndexFlatIP(self.dim)
        index.add(self.centroids)
        out = np.empty(len(vectors), dtype=np.int64)
        for s in range(0, len(vectors), chunk):
            _, idx = index.search(np.ascontiguousarray(vectors[s : s + chunk], dtype=np.float32), 1)
            out[s : s + chunk] = idx[:, 0]
        return out

    def encode(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, D) -> codes (N,), packed residual buckets (N, D * nbits / 8) uint8."""
        x = np.asarray(vectors, dtype=np.float32)
        codes = self.assign(x)
        packed = np.empty((len(x), self.dim * self.nbits // 8), dtype=np.uint8)
        per = 8 // self.nbits
        for s in range(0, len(x), 1 << 16):
            r = x[s : s + (1 << 16)] - self.centroids[codes[s : s + (1 << 16)]]  # (n, D)
            buckets = (r[:, :, None] > self.cutoffs[None]).sum(-1).astype(np.uint8)  # (n, D) in [0, 2^b)
            buckets = buckets.reshape(len(r), -1, per)  # (n, D / per, per)
            shifts = (self.nbits * np.arange(per - 1, -1, -1)).astype(np.uint8)
            packed[s : s + len(r)] = (buckets << shifts).sum(-1, dtype=np.uint16).astype(np.uint8)
        return codes.astype(self.code_dtype), packed

    def _lut(self) -> np.ndarray:
        """(D / per * 256, per): the residual values each byte value stands for, per byte position."""
        per = 8 // self.nbits
        byte = np.arange(256)
        shifts = self.nbits * np.arange(per - 1, -1, -1)
        buckets = (byte[:, None] >> shifts[None]) & ((1 << self.nbits) - 1)  # (256, per)
        w = self.weights.reshape(-1, per, self.weights.shape[1])  # (D / per, per, L)
        lut = np.stack([w[:, j, buckets[:, j]] for j in range(per)], axis=-1)  # (D / per, 256, per)
        return lut.reshape(-1, per).astype(np.float32)

    def decode(self, codes: np.ndarray, packed: np.ndarray) -> np.ndarray:
        """codes (N,), packed (N, P) -> unit-norm vectors (N, D) float32."""
        if not hasattr(self, "_lut_cache"):
            self._lut_cache = self._lut()
        lut = self._lut_cache  # (P * 256, per)
        flat_idx = packed.astype(np.intp) + 256 * np.arange(packed.shape[1])  # (N, P): row of the flat table
        resid = np.take(lut, flat_idx, axis=0).reshape(len(codes), self.dim)  # (N, D)
        v = self.centroids[codes.astype(np.int64)] + resid
        v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
        return v

    def save(self, directory: Path) -> dict[str, str]:
        directory.mkdir(parents=True, exist_ok=True)
        return {
            "centroids.npy": save_npy(directory / "centroids.npy", self.centroids),
            "cutoffs.npy": save_npy(directory / "cutoffs.npy", self.cutoffs),
            "weights.npy": save_npy(directory / "weights.npy", self.weights),
        }

    @classmethod
    def load(cls, directory: Path, nbits: int, checksums: dict[str, str] | None) -> "Codec":
        arr = {f: load_npy(directory / f, (checksums or {}).get(f) if checksums else None) for f in cls.FILES}
        return cls(arr["centroids.npy"], arr["cutoffs.npy"], arr["weights.npy"], nbits)


def _lloyd_max(resid: np.ndarray, levels: int, iters: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension scalar quantizer minimising squared error (1-D k-means), started from quantiles.

    Returns cutoffs (D, levels - 1) and bucket values (D, levels). Equal-probability buckets alone
    leave about twice the error on the bell-shaped residuals.
    """
    x = np.sort(resid.T, axis=1)  # (D, n)
    weights = np.quantile(x, (np.arange(levels) + 0.5) / levels, axis=1).T  # (D, L)
    csum = np.concatenate([np.zeros((len(x), 1)), np.cumsum(x, axis=1, dtype=np.float64)], axis=1)
    rows = np.arange(len(x))[:, None]
    for _ in range(iters):
        cutoffs = (weights[:, 1:] + weights[:, :-1]) / 2  # (D, L-1)
        # Bucket b holds the sorted values between its cutoffs; its value becomes their mean.
        edges = np.concatenate(
            [np.zeros((len(x), 1), np.int64), np.stack([np.searchsorted(x[d], cutoffs[d]) for d in range(len(x))]),
             np.full((len(x), 1), x.shape[1], np.int64)], axis=1)  # (D, L+1)
        count = np.diff(edges, axis=1)
        total = csum[rows, edges[:, 1:]] - csum[rows, edges[:, :-1]]
        weights = np.where(count > 0, total / np.maximum(count, 1), weights)
    cutoffs = (weights[:, 1:] + weights[:, :-1]) / 2
    return cutoffs.astype(np.float32), weights.astype(np.float32)


def build_ivf(codes: np.ndarray, doclens: np.ndarray, n_centroids: int) -> tuple[np.ndarray, np.ndarray]:
    """Inverted lists: for centroid c, documents ivf_docs[ivf_offsets[c]:ivf_offsets[c+1]] (each once, ascending)."""
    doc_of_token = np.repeat(np.arange(len(doclens), dtype=np.int64), doclens)  # (N,)
    keys = np.unique(codes.astype(np.int64) * len(doclens) + doc_of_token)  # sorted by (centroid, doc)
    cells = keys // max(1, len(doclens))
    ivf_docs = (keys % max(1, len(doclens))).astype(np.int32)
    ivf_offsets = np.zeros(n_centroids + 1, dtype=np.int64)
    np.cumsum(np.bincount(cells, minlength=n_centroids), out=ivf_offsets[1:])
    return ivf_offsets, ivf_docs


def token_ranges(offsets: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Token indices of documents `rows` laid end to end, and where each document starts in that list."""
    lens = offsets[rows + 1] - offsets[rows]
    starts = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lens, out=starts[1:])
    idx = np.repeat(offsets[rows] - starts[:-1], lens) + np.arange(starts[-1])
    return idx, starts


@dataclass
class PlaidSegment:
    """One segment's compressed arrays, as search needs them."""

    codes: np.ndarray  # (N_tok,)
    residuals: np.ndarray  # (N_tok, P) uint8, may be memory-mapped
    offsets: np.ndarray  # (n_docs + 1,)
    ivf_offsets: np.ndarray  # (K + 1,)
    ivf_docs: np.ndarray  # (pairs,)
    alive: np.ndarray  # (n_docs,) bool


@dataclass
class PlaidParams:
    nprobe: int = 8  # centroids probed per query token
    ndocs: int = 1024  # documents scored by centroid interaction; ndocs // 4 are decompressed

    @classmethod
    def for_k(cls, k: int) -> "PlaidParams":
        return cls(nprobe=8 if k <= 10 else 16, ndocs=max(1024, 32 * k))


def plaid_search(
    query: np.ndarray,
    codec: Codec,
    segments: list[PlaidSegment],
    k: int,
    params: PlaidParams | None = None,
    allowed: list[np.ndarray | None] | None = None,
) -> list[tuple[int, int, float]]:
    """Top-k (segment index, row, score) for one query (Q, D); `allowed[i]` optionally restricts segment i's rows."""
    params = params or PlaidParams.for_k(k)
    q = np.asarray(query, dtype=np.float32)
    S = q @ codec.centroids.T  # (Q, K)
    nprobe = min(params.nprobe, S.shape[1])
    probe = np.argpartition(-S, nprobe - 1, axis=1)[:, :nprobe]  # (Q, nprobe)
    probe_scores = np.take_along_axis(S, probe, axis=1)
    floor = probe_scores.min(axis=1)  # (Q,): the score imputed to a query token that hits nothing

    # 2. candidate generation through the inverted lists
    cand_seg, cand_row, cand_score = [], [], []
    for si, seg in enumerate(segments):
        cells = probe.reshape(-1)  # (Q * nprobe,)
        pos, starts = token_ranges(seg.ivf_offsets, cells)
        if len(pos) == 0:
            continue
        counts = np.diff(starts)
        docs = seg.ivf_docs[pos].astype(np.int64)
        qtok = np.repeat(np.repeat(np.arange(q.shape[0]), nprobe), counts)
        vals = np.repeat(probe_scores.reshape(-1), counts)
        keep = seg.alive[docs] if allowed is None or allowed[si] is None else seg.alive[docs] & allowed[si][docs]
        docs, qtok, vals = docs[keep], qtok[keep], vals[keep]
        if len(docs) == 0:
            continue
        # Best probed score per (document, query token): sort by key, best value first, keep the first.
        key = docs * q.shape[0] + qtok
        order = np.lexsort((-vals, key))
        key, vals = key[order], vals[order]
        first = np.ones(len(key), dtype=bool)
        first[1:] = key[1:] != key[:-1]
        key, vals = key[first], vals[first]
        uniq, inv = np.unique(key // q.shape[0], return_inverse=True)
        # Each (doc, token) hit adds (its score - floor) on top of the floor every token gets.
        gain = np.bincount(inv, weights=vals - floor[key % q.shape[0]], minlength=len(uniq))
        cand_seg.append(np.full(len(uniq), si))
        cand_row.append(uniq)
        cand_score.append(floor.sum() + gain)
    if not cand_seg:
        return []
    seg_idx, rows, rough = np.concatenate(cand_seg), np.concatenate(cand_row), np.concatenate(cand_score)
    seg_idx, rows = _top(seg_idx, rows, rough, params.ndocs)

    # 3. centroid interaction: MaxSim with each token replaced by its centroid
    approx = np.empty(len(rows), dtype=np.float32)
    for si in np.unique(seg_idx):
        m = seg_idx == si
        seg = segments[si]
        idx, starts = token_ranges(seg.offsets, rows[m])
        per_tok = S[:, seg.codes[idx].astype(np.int64)]  # (Q, n_tok)
        approx[m] = np.maximum.reduceat(per_tok, starts[:-1], axis=1).sum(0)
    seg_idx, rows = _top(seg_idx, rows, approx, max(k, params.ndocs // 4))

    # 4. exact MaxSim on the decompressed survivors
    out = []
    for si in np.unique(seg_idx):
        m = seg_idx == si
        seg = segments[si]
        idx, starts = token_ranges(seg.offsets, rows[m])
        vecs = codec.decode(seg.codes[idx], np.asarray(seg.residuals[idx]))  # (n_tok, D)
        scores = np.maximum.reduceat(vecs @ q.T, starts[:-1], axis=0).sum(1)  # (n_tok, Q) -> (n, Q) -> (n,)
        out.extend(zip([int(si)] * int(m.sum()), rows[m].tolist(), scores.tolist()))
    out.sort(key=lambda t: -t[2])
    return out[:k]


def _top(seg_idx: np.ndarray, rows: np.ndarray, scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    if len(scores) > n:
        keep = np.argpartition(-scores, n - 1)[:n]
        return seg_idx[keep], rows[keep]
    return seg_idx, rows
