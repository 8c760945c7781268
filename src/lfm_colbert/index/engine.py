"""The index's one door to the search kernels (lfm_colbert.index.exact, .plaid and lfm_colbert.scoring).

Everything the index does with segment arrays goes through here: opening a segment as an
`ExactSegment` or `PlaidSegment`, ranking documents across segments of both kinds, fitting and
using the residual codec, and cutting live rows out of a segment. The kernels can change their
insides without the rest of the index noticing.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from lfm_colbert.index.exact import ExactSegment, exact_search
from lfm_colbert.index.codec import KMEANS_POINTS  # noqa: F401  (re-exported: maintenance sizes its sample with it)
from lfm_colbert.index.codec import Codec, default_centroids
from lfm_colbert.index.plaid import PlaidParams, PlaidSegment, build_ivf, plaid_search
from lfm_colbert.errors import IndexFormatError
from lfm_colbert.index.segments import read_segment, segment_dir
from lfm_colbert.scoring import stack_queries, token_ranges

Segment = ExactSegment | PlaidSegment

__all__ = [
    "Codec", "ExactSegment", "PlaidSegment", "Segment", "default_centroids", "stack_queries", "is_coded",
    "open_segment", "with_alive", "rank", "live_tokens", "live_arrays", "encode", "with_ivf", "doc_vectors",
    "load_codec", "train_codec",
]


def is_coded(record: Mapping[str, Any]) -> bool:
    """Whether a segment record names codes (compressed) rather than float16 vectors only."""
    return "codes.npy" in record["files"]


def open_segment(root: Path, record: Mapping[str, Any], verify: bool, dim: int, codec: Codec | None) -> Segment:
    """A segment's arrays as the kernels take them; big ones memory-mapped. Every document starts dead
    (`with_alive` sets the live rows of a state). Shapes are checked against the catalog's record,
    the index's dimension and the codec; with `verify`, checksums and every code too."""
    coded = is_coded(record)
    a = read_segment(root, record, verify, mmap=("residuals", "vectors") if coded else ("vectors",))
    _check_arrays(segment_dir(root, record["id"]), record, a, dim, codec if coded else None, coded, verify)
    doclens = a["doclens"].astype(np.int64)
    offsets = np.zeros(len(doclens) + 1, dtype=np.int64)
    np.cumsum(doclens, out=offsets[1:])
    alive = np.zeros(len(doclens), dtype=bool)
    if coded:
        return PlaidSegment(a["codes"], a["residuals"], offsets, a["ivf_offsets"], a["ivf_docs"], alive, a.get("vectors"))
    return ExactSegment(a["vectors"], offsets, alive)


def _check_arrays(d: Path, record: Mapping[str, Any], a: dict[str, np.ndarray], dim: int, codec: Codec | None,
                  coded: bool, verify: bool) -> None:
    n_docs, n_tok = record["n_docs"], record["n_tokens"]

    def bad(name: str, why: str) -> IndexFormatError:
        return IndexFormatError(f"corrupted index file {d / (name + '.npy')}: {why}")

    def want(name: str, shape: tuple, kinds: str) -> np.ndarray:
        arr = a.get(name)
        if arr is None:
            raise bad(name, "missing from the segment")
        if arr.shape != shape or arr.dtype.kind not in kinds:
            raise bad(name, f"holds a {arr.dtype} array of shape {arr.shape}, not {shape}")
        return arr

    doclens = want("doclens", (n_docs,), "iu")
    if n_docs and (int(doclens.min()) < 1 or int(doclens.sum()) != n_tok):
        raise bad("doclens", f"document lengths do not add up to the {n_tok} tokens recorded")
    if "vectors" in a:
        want("vectors", (n_tok, dim), "f")
    if not coded:
        if "vectors" not in a:
            raise bad("vectors", "missing from the segment")
        return
    if codec is None:
        raise IndexFormatError(f"{d} holds codes, but the manifest names no trained codec")
    k = len(codec.centroids)
    codes = want("codes", (n_tok,), "iu")
    want("residuals", (n_tok, codec.n_sub), "u")
    offsets = want("ivf_offsets", (k + 1,), "iu")
    ivf_docs = a["ivf_docs"]
    if ivf_docs.ndim != 1 or ivf_docs.dtype.kind not in "iu":
        raise bad("ivf_docs", f"holds a {ivf_docs.dtype} array of shape {ivf_docs.shape}")
    if offsets[0] != 0 or offsets[-1] != len(ivf_docs) or (np.diff(offsets) < 0).any():
        raise bad("ivf_offsets", "the inverted lists' offsets are out of order")
    if verify and n_tok and (int(codes.max()) >= k or (len(ivf_docs) and int(ivf_docs.max()) >= n_docs)):
        raise bad("codes", "a code or list entry points past the codec or the segment")


def with_alive(seg: Segment, alive: np.ndarray) -> Segment:
    """`seg` with another live mask: a shallow copy sharing the arrays, since states that other threads
    may be searching keep the old one."""
    new = copy.copy(seg)
    new.alive = alive
    return new


def rank(
    queries: np.ndarray, segments: Sequence[Segment], codec: Codec | None, k: int,
    allowed: list[np.ndarray] | None = None,
) -> list[list[tuple[int, int, float]]]:
    """Top-k (position in `segments`, row, score) per query of (B, Q, D). `allowed[i]`: the rows of
    segment i a filter lets through."""
    # Float16 segments are scanned exactly, coded ones through PLAID; both give (segment, row, score).
    # They mix only in a compressed index between training its codec and encoding what it held.
    fp16 = [i for i, seg in enumerate(segments) if isinstance(seg, ExactSegment)]
    coded = [i for i, seg in enumerate(segments) if not isinstance(seg, ExactSegment)]

    def pick(idx: list[int]) -> list[np.ndarray | None] | None:
        return None if allowed is None else [allowed[i] for i in idx]

    raw: list[list[tuple[int, int, float]]] = [[] for _ in queries]
    if fp16:
        for hits, found in zip(raw, exact_search(queries, [segments[i] for i in fp16], k, pick(fp16))):
            hits += [(fp16[si], row, score) for si, row, score in found]
    if coded:
        for hits, q in zip(raw, queries):
            found = plaid_search(q, codec, [segments[i] for i in coded], k, PlaidParams.for_k(k), pick(coded))
            hits += [(coded[si], row, score) for si, row, score in found]
    if fp16 and coded:
        raw = [sorted(hits, key=lambda h: (-h[2], h[0], h[1]))[:k] for hits in raw]
    return raw


def live_tokens(seg: Segment) -> np.ndarray:
    """Indices of the tokens of a segment's live documents."""
    return token_ranges(seg.offsets, np.flatnonzero(seg.alive))[0]


def token_rows(seg: Segment, idx: np.ndarray) -> np.ndarray:
    """Float32 token vectors (n, D) at token indices `idx` of a float16 segment."""
    return np.asarray(seg.tokens[idx], dtype=np.float32)


def encode(codec: Codec, flat: np.ndarray, doclens: np.ndarray, rescore: bool) -> dict[str, np.ndarray]:
    """Centroid and residual codes for token vectors (N_tok, D), plus float16 copies with rescore."""
    codes, packed = codec.encode(np.asarray(flat, dtype=np.float32))
    arrays = {"codes": codes, "residuals": packed, "doclens": doclens}
    if rescore:
        arrays["vectors"] = np.asarray(flat, dtype=np.float16)
    return arrays


def with_ivf(arrays: dict[str, np.ndarray], codec: Codec | None) -> dict[str, np.ndarray]:
    """Add the inverted lists (centroid -> documents) to a coded segment's arrays."""
    if "codes" in arrays:
        arrays["ivf_offsets"], arrays["ivf_docs"] = build_ivf(arrays["codes"], arrays["doclens"], len(codec.centroids))
    return arrays


def live_arrays(seg: Segment, rows: np.ndarray, codec: Codec | None, rescore: bool) -> dict[str, np.ndarray]:
    """A segment's arrays for documents `rows` only, without inverted lists; a float16 segment is
    encoded on the way when `codec` is given."""
    idx, _ = token_ranges(seg.offsets, rows)
    doclens = (seg.offsets[rows + 1] - seg.offsets[rows]).astype(np.int32)
    if isinstance(seg, ExactSegment):
        vectors = np.asarray(seg.tokens[idx])
        if codec is not None:
            return encode(codec, vectors, doclens, rescore)
        return {"vectors": vectors, "doclens": doclens}
    out = {"codes": seg.codes[idx], "residuals": np.asarray(seg.residuals[idx]), "doclens": doclens}
    if seg.vectors is not None:
        out["vectors"] = np.asarray(seg.vectors[idx])
    return out


def doc_vectors(seg: Segment, row: int, codec: Codec | None) -> np.ndarray:
    """One stored document's token vectors (T, D) float32: as stored, or decoded from its codes."""
    lo, hi = int(seg.offsets[row]), int(seg.offsets[row + 1])
    if isinstance(seg, ExactSegment):
        return np.asarray(seg.tokens[lo:hi], dtype=np.float32)
    if seg.vectors is not None:
        return np.asarray(seg.vectors[lo:hi], dtype=np.float32)
    return codec.decode(seg.codes[lo:hi], np.asarray(seg.residuals[lo:hi]))


def load_codec(directory: Path, entry: Mapping[str, Any], verify: bool, dim: int) -> Codec:
    """The codec a manifest's "codec" entry describes; with verify, its files' checksums must match."""
    for name in Codec.FILES:
        if not (directory / name).is_file():
            raise IndexFormatError(f"missing index file {directory / name}")
    codec = Codec.load(directory, entry["nbits"], entry["files"] if verify else None, entry.get("format"))
    if codec.centroids.ndim != 2 or codec.centroids.shape != (entry["n_centroids"], dim):
        raise IndexFormatError(f"corrupted index file {directory / 'centroids.npy'}: shape {codec.centroids.shape}, "
                               f"not ({entry['n_centroids']}, {dim})")
    if codec.pq_centroids.ndim != 3 or codec.pq_centroids.shape[1:] != (256, dim // max(codec.n_sub, 1)):
        raise IndexFormatError(f"corrupted index file {directory / 'pq_centroids.npy'}: shape {codec.pq_centroids.shape}")
    return codec


def require_codec_library() -> None:
    """Fail before writing anything when a compressed index could not train its codec."""
    from lfm_colbert.index.codec import _faiss

    _faiss()


def train_codec(sample: np.ndarray, nbits: int, n_centroids: int, directory: Path) -> tuple[Codec, dict[str, Any]]:
    """Fit a codec to `sample` (N, D) and save its files into `directory`; returns it and the
    manifest's entry for it (less what the caller adds)."""
    codec = Codec.train(sample, nbits, n_centroids)
    files = codec.save(directory)
    return codec, {"format": Codec.FORMAT, "nbits": codec.nbits, "n_centroids": len(codec.centroids), "files": files}
