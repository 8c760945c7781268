"""The compression codec of PLAID-style indexes: k-means centroids plus product-quantized residuals.

Each token vector v is stored as the id of its nearest k-means centroid c (2 bytes while there
are at most 65,536 centroids) plus the residual v - c product-quantized at 2 or 4 bits per
dimension: one byte per sub-vector of 4 (2-bit) or 2 (4-bit) dimensions, 32 or 64 bytes for 128
dimensions, so 34 or 66 bytes per token instead of 256 in float16. Vector quantization of the
residual leaves 25-35% less squared error than a per-dimension scalar quantizer at the same size.
Search over these codes is plaid.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lfm_colbert.errors import IndexFormatError, InputError
from lfm_colbert.index.store import load_npy, save_npy


# From this many centroids on, tokens are assigned through an inverted file over the centroids.
IVF_ASSIGN = 8192
# k-means: sample points per centroid and iterations (see Codec.train).
KMEANS_POINTS = 32
KMEANS_ITERS = 10
# The most centroids default_centroids picks: 16k, as the former 8 * sqrt rule gave at 10M tokens, so
# k-means never costs more than it did there (its time grows as centroids^2 at KMEANS_POINTS each).
# 64k at 1M MiniLM tokens gained 0.008 of 2-bit recall with perfect candidates and cost 16x the k-means.
MAX_CENTROIDS = 1 << 14


def default_centroids(n_tokens: int) -> int:
    """The power of two nearest 16 * sqrt(tokens), at most MAX_CENTROIDS: 4k for 60k tokens, 16k from 1M.

    Finer centroids serve both stages that lose recall. On real token vectors (MiniLM states of
    1M tokens, bench/minilm_corpus.py) 4k -> 16k centroids raised 2-bit recall@10 against exact
    from 0.828 to 0.908 with the same probing: centroid interaction (stage 3) ranks better on
    finer centroids (0.100 -> 0.021 of the exact top-10 lost there), and the smaller residuals
    decode closer (ceiling with perfect candidates 0.909 -> 0.929).
    """
    k = 2 ** int(round(math.log2(max(1.0, 16.0 * math.sqrt(n_tokens)))))
    return int(max(1, min(k, MAX_CENTROIDS, n_tokens)))


def _faiss():
    try:
        import faiss
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise InputError("compressed indexes need faiss for k-means: pip install 'lfm-colbert[index]'") from exc
    return faiss


@dataclass
class Codec:
    """Centroids (K, D) and a product quantizer for residuals: pq_centroids (M, 256, D / M).

    At `nbits` per dimension the residual takes M = D * nbits / 8 bytes (one byte per sub-vector
    of 8 / nbits dimensions): 2 bits -> 32 sub-vectors of 4 dims, 4 bits -> 64 of 2 dims.
    """

    centroids: np.ndarray
    pq_centroids: np.ndarray
    nbits: int

    FILES = ("centroids.npy", "pq_centroids.npy")
    FORMAT = "ivf-pq-1"  # recorded in the manifest; bump when the codec's files change meaning

    @property
    def dim(self) -> int:
        return int(self.centroids.shape[1])

    @property
    def n_sub(self) -> int:
        return int(self.pq_centroids.shape[0])

    @property
    def code_dtype(self) -> type:
        return np.uint16 if len(self.centroids) <= 1 << 16 else np.int32

    @property
    def bytes_per_token(self) -> int:
        return np.dtype(self.code_dtype).itemsize + self.dim * self.nbits // 8

    @classmethod
    def train(
        cls, vectors: np.ndarray, nbits: int, n_centroids: int | None = None, seed: int = 0, niter: int | None = None
    ) -> "Codec":
        """Fit centroids with faiss k-means on (a sample of) `vectors` (N, D), then the residual PQ."""
        if nbits not in (2, 4):
            raise InputError(f"nbits must be 2 or 4, not {nbits}")
        x = np.ascontiguousarray(vectors, dtype=np.float32)
        n, dim = x.shape
        if dim % 8:
            raise InputError(f"compressed indexes need a dimension divisible by 8, not {dim}")
        k = int(n_centroids or default_centroids(n))
        if not 1 <= k <= n:
            raise InputError(f"cannot train {k} centroids on {n} token vectors")
        faiss = _faiss()
        rng = np.random.default_rng(seed)
        # faiss would subsample to 256 points per centroid anyway; KMEANS_POINTS is plenty and faster.
        pts = KMEANS_POINTS
        sample = x[rng.choice(n, size=min(n, pts * k), replace=False)] if n > pts * k else x
        # min_points_per_centroid only decides when faiss prints a warning to stderr (never the
        # result); a small collection, trained early with train_tokens, is not worth one.
        km = faiss.Kmeans(dim, k, niter=KMEANS_ITERS if niter is None else niter, seed=seed, spherical=True,
                          verbose=False, max_points_per_centroid=pts, min_points_per_centroid=1)
        km.train(sample)
        centroids = np.ascontiguousarray(km.centroids, dtype=np.float32)  # (K, D)
        m = dim * nbits // 8
        codec = cls(centroids, np.zeros((m, 256, dim // m), np.float32), nbits)
        # Up to 256 points per PQ centroid and 20 iterations: against 32 points and 12 iterations this
        # cuts the decoding error 16% at 4 bits and 5% at 2 bits for a few seconds of training (on
        # bench/search.py's clustered vectors recall@10 moved by at most 0.005, 10k and 100k docs).
        held = x[rng.choice(n, size=min(n, 256 * 256), replace=False)]
        resid = np.ascontiguousarray(held - centroids[codec.assign(held)])  # (n, D)
        pq = faiss.ProductQuantizer(dim, m, 8)
        pq.cp.niter, pq.cp.seed, pq.cp.max_points_per_centroid, pq.cp.min_points_per_centroid = 20, seed, 256, 1
        if len(resid) < 256:  # a tiny first batch: faiss needs a point per code; repeats give duplicate codes
            resid = np.ascontiguousarray(np.resize(resid, (256, dim)))
        pq.train(resid)
        codec.pq_centroids = faiss.vector_to_array(pq.centroids).reshape(m, 256, dim // m).astype(np.float32)
        codec._pq_cache = pq
        return codec

    def _pq(self):
        if getattr(self, "_pq_cache", None) is None:
            faiss = _faiss()
            pq = faiss.ProductQuantizer(self.dim, self.n_sub, 8)
            faiss.copy_array_to_vector(np.ascontiguousarray(self.pq_centroids, dtype=np.float32).ravel(), pq.centroids)
            self._pq_cache = pq
        return self._pq_cache

    def _assigner(self):
        """A faiss index over the centroids: flat (exact) up to IVF_ASSIGN of them, else an inverted
        file over the centroids themselves, probing 1/16 of its lists.

        Encoding every token against every centroid grows as N * sqrt(N): at 100k documents (10M
        tokens, 16k centroids) it took 346 s of a 592 s build, 83 s of 345 s this way. 1.4% of
        clustered vectors got a runner-up centroid, on average 0.0014 less similar; recall@10 moved
        from 0.918 to 0.918 (2-bit) and 0.970 to 0.968 (4-bit), queries/s within noise.
        """
        if getattr(self, "_assign_cache", None) is None:
            faiss = _faiss()
            index = faiss.IndexFlatIP(self.dim)
            if len(self.centroids) >= IVF_ASSIGN:
                nlist = len(self.centroids) // 64
                index = faiss.IndexIVFFlat(index, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)  # keeps its quantizer alive
                index.train(self.centroids)
                index.nprobe = nlist // 16
            index.add(self.centroids)
            self._assign_cache = index
        return self._assign_cache

    def assign(self, vectors: np.ndarray, chunk: int = 1 << 16) -> np.ndarray:
        """Nearest centroid by inner product for each row of (N, D) (see _assigner)."""
        index = self._assigner()
        out = np.empty(len(vectors), dtype=np.int64)
        for s in range(0, len(vectors), chunk):
            x = np.ascontiguousarray(vectors[s : s + chunk], dtype=np.float32)
            idx = index.search(x, 1)[1][:, 0]
            lost = np.flatnonzero(idx < 0)  # every probed list empty: vanishingly rare, but never code a -1
            if len(lost):
                idx[lost] = np.argmax(x[lost] @ self.centroids.T, axis=1)
            out[s : s + len(x)] = idx
        return out

    def encode(self, vectors: np.ndarray, chunk: int = 1 << 16) -> tuple[np.ndarray, np.ndarray]:
        """(N, D) -> centroid codes (N,), residual PQ codes (N, M) uint8."""
        x = np.asarray(vectors, dtype=np.float32)
        codes = self.assign(x)
        packed = np.empty((len(x), self.n_sub), dtype=np.uint8)
        pq = self._pq()
        for s in range(0, len(x), chunk):
            r = np.ascontiguousarray(x[s : s + chunk] - self.centroids[codes[s : s + chunk]])  # (n, D)
            packed[s : s + len(r)] = pq.compute_codes(r)
        return codes.astype(self.code_dtype), packed

    def decode(self, codes: np.ndarray, packed: np.ndarray) -> np.ndarray:
        """codes (N,), packed (N, M) -> unit-norm vectors (N, D) float32."""
        # A numpy gather, not faiss's decode: that costs ~5 ms a call however few vectors it gets. One
        # np.take from the (M * 256, D / M) table is 3-4x faster than indexing (M, 256, D / M) by two arrays.
        m = self.n_sub
        rows = np.asarray(packed, dtype=np.intp) + 256 * np.arange(m)  # (N, M) rows of the flat table
        v = np.take(self.pq_centroids.reshape(m * 256, -1), rows.ravel(), axis=0).reshape(len(codes), self.dim)
        v += np.take(self.centroids, codes.astype(np.intp), axis=0)
        v /= np.maximum(np.sqrt(np.einsum("nd,nd->n", v, v))[:, None], 1e-12)
        return v

    def save(self, directory: Path) -> dict[str, str]:
        directory.mkdir(parents=True, exist_ok=True)
        return {f: save_npy(directory / f, getattr(self, f[:-4])) for f in self.FILES}

    @classmethod
    def load(cls, directory: Path, nbits: int, checksums: dict[str, str] | None, fmt: str | None = FORMAT) -> "Codec":
        if fmt != cls.FORMAT:
            raise IndexFormatError(f"{directory}: codec format {fmt!r}; this lfm-colbert reads {cls.FORMAT!r}")
        missing = [f for f in cls.FILES if not (directory / f).exists()]
        if missing:
            raise IndexFormatError(f"{directory} lacks codec files {missing} (index written by an older version?)")
        arr = {f: load_npy(directory / f, (checksums or {}).get(f) if checksums else None) for f in cls.FILES}
        codec = cls(arr["centroids.npy"], arr["pq_centroids.npy"], nbits)
        if codec.n_sub != codec.dim * nbits // 8:
            raise IndexFormatError(f"{directory}: {codec.n_sub} residual sub-vectors do not match {nbits} bits")
        return codec
