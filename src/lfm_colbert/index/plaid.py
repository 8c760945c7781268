"""Compressed search, PLAID-style, over the codes of codec.py (centroid id + quantized residual per token).

Search, for one query (Q, D):
  1. score the query against all centroids,                       S (Q, K)
  2. candidate generation: probe the `nprobe` best centroids per query token through the
     inverted lists (centroid -> documents) and give each document a rough score from the probed
     centroids it contains (a query token that hits none scores its weakest probed centroid).
     With a metadata filter, probe wider until `ndocs` candidates pass it; a filter that leaves
     few documents sends them all to stage 3 instead,
  3. centroid interaction: for the best `ndocs` documents, approximate MaxSim with every token
     replaced by its centroid, S[:, codes],
  4. decompress the best `ndecode` and rank them by exact MaxSim on the decoded vectors (or, in
     an index that keeps its float16 vectors, on those: exact scores, read for these documents only).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lfm_colbert.index.codec import Codec
from lfm_colbert.scoring import Kernel, _torch, maxsim_packed, run_tasks, token_ranges



def build_ivf(codes: np.ndarray, doclens: np.ndarray, n_centroids: int) -> tuple[np.ndarray, np.ndarray]:
    """Inverted lists: for centroid c, documents ivf_docs[ivf_offsets[c]:ivf_offsets[c+1]] (each once, ascending)."""
    doc_of_token = np.repeat(np.arange(len(doclens), dtype=np.int64), doclens)  # (N,)
    keys = np.unique(codes.astype(np.int64) * len(doclens) + doc_of_token)  # sorted by (centroid, doc)
    cells = keys // max(1, len(doclens))
    ivf_docs = (keys % max(1, len(doclens))).astype(np.int32)
    ivf_offsets = np.zeros(n_centroids + 1, dtype=np.int64)
    np.cumsum(np.bincount(cells, minlength=n_centroids), out=ivf_offsets[1:])
    return ivf_offsets, ivf_docs


@dataclass
class PlaidSegment:
    """One segment's compressed arrays, as search needs them."""

    codes: np.ndarray  # (N_tok,)
    residuals: np.ndarray  # (N_tok, P) uint8, may be memory-mapped
    offsets: np.ndarray  # (n_docs + 1,)
    ivf_offsets: np.ndarray  # (K + 1,)
    ivf_docs: np.ndarray  # (pairs,)
    alive: np.ndarray  # (n_docs,) bool
    vectors: np.ndarray | None = None  # (N_tok, D) float16, memory-mapped: an index built with rescore


# A filter that leaves at most SMALL_FILTER * ndocs documents sends all of them to centroid interaction.
SMALL_FILTER = 4
# Document tokens per centroid-interaction task: its (Q, tokens) float32 gather stays within ~4 MiB.
INTERACTION_TOKENS = 1 << 15


@dataclass
class PlaidParams:
    nprobe: int = 8  # centroids probed per query token
    ndocs: int = 2048  # documents scored by centroid interaction
    ndecode: int = 256  # of those, documents decompressed and scored exactly

    @classmethod
    def for_k(cls, k: int) -> "PlaidParams":
        # Stanford PLAID's defaults for k <= 10 are (2 cells, 256 docs). Measured on MiniLM token
        # states (bench/minilm_corpus.py, 16k centroids, 50 queries, recall@10 against exact):
        #   100k docs, 2-bit (ceiling with perfect candidates 0.898): (4, 1024, 128) 0.846 at 44 q/s,
        #     (8, 2048, 256) 0.878 at 37 q/s, (8, 2048, 512) 0.892 at 25 q/s, (8, 4096, 512) 0.886;
        #   100k docs, 4-bit (ceiling 0.978): (4, 1024, 128) 0.886, (8, 2048, 256) 0.940 at 34 q/s;
        #   10k docs, 2-bit (ceiling 0.918): (4, 1024, 128) 0.888, (8, 2048, 256) 0.918.
        # Exact search runs ~3.3 q/s at 100k documents here, so (8, 2048, 256) stays above 10x it.
        # More documents at stage 3 can lose recall: its rough scores let more near-misses through.
        return cls(nprobe=8 if k <= 10 else 16, ndocs=max(2048, 64 * k), ndecode=max(256, 8 * k))


def plaid_search(
    query: np.ndarray,
    codec: Codec,
    segments: list[PlaidSegment],
    k: int,
    params: PlaidParams | None = None,
    allowed: list[np.ndarray | None] | None = None,
    trace: dict | None = None,
) -> list[tuple[int, int, float]]:
    """Top-k (segment index, row, score) for one query (Q, D); `allowed[i]` optionally restricts segment i's rows.
    `trace`, when given, receives the (segment index, row) arrays that reached stage 3 ("probed") and
    stage 4 ("decoded"): bench/search.py splits recall lost to candidate generation from decoding."""
    params = params or PlaidParams.for_k(k)
    q = np.asarray(query, dtype=np.float32)
    S = q @ codec.centroids.T  # (Q, K)
    usable = [seg.alive if allowed is None or allowed[si] is None else seg.alive & allowed[si] for si, seg in enumerate(segments)]
    n_usable = sum(int(u.sum()) for u in usable)
    if allowed is not None and n_usable <= SMALL_FILTER * params.ndocs:
        # A selective filter: the probed lists would hold few of its documents, so every one of them
        # goes to centroid interaction (cheap: a gather from S per token).
        seg_idx = np.concatenate([np.full(int(u.sum()), si) for si, u in enumerate(usable)] + [np.zeros(0, np.int64)])
        rows = np.concatenate([np.flatnonzero(u) for u in usable] + [np.zeros(0, np.int64)])
    else:
        nprobe = min(params.nprobe, S.shape[1])
        seg_idx, rows, rough = _candidates(S, nprobe, segments, usable)
        while allowed is not None and len(rows) < params.ndocs and nprobe < S.shape[1]:
            nprobe = min(4 * nprobe, S.shape[1])  # a filter that the nearest lists rarely pass: probe wider
            seg_idx, rows, rough = _candidates(S, nprobe, segments, usable)
        seg_idx, rows = _top(seg_idx, rows, rough, params.ndocs)
    if len(rows) == 0:
        return []

    # 3. centroid interaction: MaxSim with each token replaced by its centroid
    approx = np.empty(len(rows), dtype=np.float32)
    for si in np.unique(seg_idx):
        m = np.flatnonzero(seg_idx == si)
        approx[m] = _centroid_interaction(S, segments[si], rows[m])
    if trace is not None:
        trace["probed"] = (seg_idx.copy(), rows.copy())

    # 4. exact MaxSim on the decoded (or stored) vectors of the best `ndecode` by centroid interaction
    seg_idx, rows = _top(seg_idx, rows, approx, max(k, params.ndecode))
    if trace is not None:
        trace["decoded"] = (seg_idx.copy(), rows.copy())
    scores = _exact_scores(q, codec, segments, seg_idx, rows)
    out = list(zip(seg_idx.tolist(), rows.tolist(), scores.tolist()))
    out.sort(key=lambda t: (-t[2], t[0], t[1]))
    return out[:k]


def _centroid_interaction(S: np.ndarray, seg: PlaidSegment, rows: np.ndarray) -> np.ndarray:
    """Approximate MaxSim (n,) of documents `rows` of one segment: each token replaced by its centroid's
    column of S (Q, K). In pieces of INTERACTION_TOKENS, shared by the scoring workers: on 2 cores,
    2,048 documents of ~100 tokens took 2.3 ms this way, 4.9 ms in one piece."""
    idx, starts = token_ranges(seg.offsets, rows)
    codes = seg.codes[idx].astype(np.intp)  # (n_tok,)
    out = np.zeros(len(rows), dtype=np.float32)
    if starts[-1] == 0:
        return out
    bounds = np.searchsorted(starts, np.arange(0, starts[-1], INTERACTION_TOKENS), side="right") - 1
    bounds = np.unique(np.concatenate([[0], bounds, [len(rows)]]))  # documents [b_j, b_j+1) form piece j

    def piece(j: int) -> None:
        a, b = bounds[j], bounds[j + 1]
        per_tok = np.take(S, codes[starts[a] : starts[b]], axis=1)  # (Q, tokens of the piece)
        # Segment max along the contiguous axis: ~5x faster than reduceat over rows.
        out[a:b] = np.maximum.reduceat(per_tok, starts[a:b] - starts[a], axis=1).sum(0)

    run_tasks(piece, list(range(len(bounds) - 1)), Kernel.float32().threads)
    return out


def _exact_scores(q: np.ndarray, codec: Codec, segments: list[PlaidSegment], seg_idx: np.ndarray,
                  rows: np.ndarray) -> np.ndarray:
    """MaxSim (n,) of query (Q, D) with documents (segment index, row), on their stored float16
    vectors where every segment involved keeps them (rescore), else on their decoded codes."""
    order = np.argsort(seg_idx, kind="stable")
    s_idx, r = seg_idx[order], rows[order]
    hit = np.unique(s_idx)
    rescore = all(segments[si].vectors is not None for si in hit)
    codes, packed, stored, lens = [], [], [], []
    for si in hit:
        seg = segments[si]
        idx, starts = token_ranges(seg.offsets, r[s_idx == si])
        if rescore:
            stored.append(np.asarray(seg.vectors[idx], dtype=np.float32))
        else:
            codes.append(seg.codes[idx])
            packed.append(np.asarray(seg.residuals[idx]))
        lens.append(np.diff(starts))
    if rescore:
        vecs = np.concatenate(stored)  # (n_tok, D)
    else:
        codes_, packed_ = np.concatenate(codes), np.concatenate(packed)  # (n_tok,), (n_tok, M)
        vecs = lambda i: codec.decode(codes_[i], packed_[i])  # noqa: E731 - decoded block by block, in the kernel's workers
    offsets = np.concatenate([[0], np.cumsum(np.concatenate(lens))])  # (n + 1,)
    out = np.empty(len(rows), dtype=np.float32)
    out[order] = maxsim_packed(q[None], vecs, offsets)[:, 0]  # float32, the kernel every exact score uses
    return out


def _candidates(
    S: np.ndarray, nprobe: int, segments: list[PlaidSegment], usable: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stage 2: documents in the `nprobe` best lists of some query token, with a rough score each.

    Sparse and across all segments at once: only (document, query token) pairs that some probed list
    holds are touched, so the cost follows the lists, not the corpus. Returns (segment index, row,
    rough score) of the usable (live, allowed) documents found.
    """
    nq = S.shape[0]
    probe = _top_columns(S, nprobe)  # (Q, nprobe)
    probe_scores = np.take_along_axis(S, probe, axis=1)  # (Q, nprobe)
    by_score = np.argsort(-probe_scores, axis=1)  # rank 0 = a token's best probed list
    probe, probe_scores = np.take_along_axis(probe, by_score, 1), np.take_along_axis(probe_scores, by_score, 1)
    floor = probe_scores[:, -1]  # (Q,): the score imputed to a query token that hits nothing
    # Each (document, query token, rank) hit is one integer, doc << (qb + rb) | token << rb | rank, so
    # one plain sort groups a document's hits and puts each token's best rank first. numpy sorts
    # int32 / int64 keys with SIMD: 215k hits of a 32-token query sort in 0.4 / 0.8 ms, where the
    # stable argsort behind np.unique(return_index=True) took 7 ms.
    qb, rb = max(1, (nq - 1).bit_length()), max(1, (nprobe - 1).bit_length())
    gains = np.zeros((1 << qb, 1 << rb), np.float32)
    gains[:nq, :nprobe] = probe_scores - floor[:, None]  # (2^qb, 2^rb) what a hit adds over the floor
    base = np.concatenate([[0], np.cumsum([len(seg.alive) for seg in segments])])  # global document numbers
    dtype = np.int32 if int(base[-1]) < 1 << (31 - qb - rb) else np.int64
    tok_rank = ((np.arange(nq)[:, None] << rb) | np.arange(nprobe)[None, :]).astype(dtype).reshape(-1)  # (Q * nprobe,)
    keys = []
    for si, seg in enumerate(segments):
        pos, starts = token_ranges(seg.ivf_offsets, probe.reshape(-1))
        if len(pos):
            docs = seg.ivf_docs[pos].astype(dtype) + dtype(base[si])
            keys.append((docs << (qb + rb)) | np.repeat(tok_rank, np.diff(starts)))  # (L,)
    if not keys:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    key = np.sort(np.concatenate(keys))
    pair = key >> rb  # (document, token)
    best = np.empty(len(key), bool)  # first hit of each pair: its best rank
    best[0] = True
    np.not_equal(pair[1:], pair[:-1], out=best[1:])
    key = key[best]
    gain = gains.reshape(-1)[key & ((1 << (qb + rb)) - 1)]  # (pairs,) >= 0
    doc = key >> (qb + rb)
    first = np.flatnonzero(np.concatenate([[True], doc[1:] != doc[:-1]]))  # each document's first pair
    docs = doc[first].astype(np.int64)
    rough = (floor.sum() + np.add.reduceat(gain, first)).astype(np.float32)  # (n_hit,)
    keep = np.concatenate(usable)[docs]  # global document numbers index the segments' masks end to end
    docs, rough = docs[keep], rough[keep]
    seg_idx = np.searchsorted(base, docs, side="right") - 1
    return seg_idx, docs - base[seg_idx], rough


def _top_columns(S: np.ndarray, n: int) -> np.ndarray:
    """Column indices of each row's n largest entries, in any order (Q, n)."""
    torch = _torch()
    if torch is not None:  # numpy's argpartition takes 4-5 ms on (32, 16384) here, topk 0.35
        return torch.topk(torch.from_numpy(np.ascontiguousarray(S)), n, dim=1, sorted=False).indices.numpy()
    return np.argpartition(S, S.shape[1] - n, axis=1)[:, S.shape[1] - n :]


def _top(seg_idx: np.ndarray, rows: np.ndarray, scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    if len(scores) > n:
        keep = np.argpartition(-scores, n - 1)[:n]
        return seg_idx[keep], rows[keep]
    return seg_idx, rows
