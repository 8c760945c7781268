"""Work a writer does after (or instead of) an add: merging small segments, compacting deleted
documents away, and training a compressed index's codec. All of it runs under the writer lock."""

from __future__ import annotations

import json
import math
import shutil
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from lfm_colbert.index import engine, store
from lfm_colbert.index.segments import next_segment_id, remove_orphans, write_segment

if TYPE_CHECKING:
    from lfm_colbert.index.writer import Writer

# Written at most this many tokens per segment, so an add of a large collection streams to disk.
SEGMENT_TOKENS = 1 << 20
# Rewrite segments once this fraction of their stored tokens belongs to deleted documents.
COMPACT_AT = 0.25
# The codec is not refitted as the index grows (the original vectors are gone). Past this many times
# the tokens it was fitted to, adds warn: at 3.8x (10k clustered documents, codec fitted to the
# first 266k tokens) recall@10 fell from 0.986 to 0.973 at 4 bits and from 0.964 to 0.926 at 2 bits.
REFIT_GROWTH = 4.0
# Every add writes at least one segment, and each costs a search fixed work: 1,000 documents added
# one at a time searched at 7.8 queries/s in 1,000 segments, 64 once merged into 20. Segments under
# SEGMENT_TOKENS / MERGE_FANIN are grouped in size tiers (powers of MERGE_FANIN); a tier holding
# MERGE_FANIN of them becomes one segment, so each token is rewritten about log8(1M / its size) times.
MERGE_FANIN = 8


def merge_group(records: list[dict[str, Any]]) -> list[int]:
    """MERGE_FANIN small segments of one kind and size tier (oldest first), or none."""
    tiers: dict[tuple[bool, int], list[int]] = {}
    for r in records:
        if r["n_tokens"] * MERGE_FANIN < SEGMENT_TOKENS:
            tier = int(math.log(max(r["n_tokens"], 1), MERGE_FANIN))
            tiers.setdefault((engine.is_coded(r), tier), []).append(r["id"])
    return next((sids[:MERGE_FANIN] for sids in tiers.values() if len(sids) >= MERGE_FANIN), [])


def maybe_compact(w: "Writer") -> None:
    """Compact when deleted documents hold too much, or float16 segments wait for a trained codec;
    then merge small segments."""
    n_docs, live = w.catalog.counts()
    records = w.catalog.segments()
    stored = sum(r["n_tokens"] for r in records)
    held = w.reader.codec is not None and not all(map(engine.is_coded, records))  # float16 left from before training
    if held or (stored and 1 - live / stored > COMPACT_AT):
        compact(w)
    if merge_group(w.catalog.segments()):
        with store.writer_lock(w.path):
            w.reader.refresh(force=True)
            while group := merge_group(w.catalog.segments()):
                rewrite(w, group, merge=True)


def compact(w: "Writer") -> None:
    """Rewrite segments that hold deleted documents (and encode float16 segments once a codec exists)."""
    with store.writer_lock(w.path):
        w.reader.refresh(force=True)
        trained = w.reader.codec is not None
        segs = [(sid, w.reader.segments[sid]) for sid in w.reader.order]
        rewrite(w, [sid for sid, seg in segs if not seg.alive.all() or (trained and isinstance(seg, engine.ExactSegment))])


def rewrite(w: "Writer", sids: list[int], merge: bool = False) -> None:
    """Replace segments `sids` by copies of their live documents (all in one segment with `merge`),
    in one commit, under the writer lock. A float16 segment of a compressed index with a trained
    codec is encoded on the way."""
    if not sids:
        return
    reader = w.reader
    records = {r["id"] for r in w.catalog.segments()}
    seg_id = next_segment_id(w.path, set(reader.order))
    rescore = bool(reader.manifest["storage"].get("rescore"))
    written = []
    for group in [sids] if merge else [[sid] for sid in sids]:
        parts, docs = [], []
        for sid in group:
            rows = w.catalog.rows_of_segment(sid)
            if rows:
                codec = reader.codec if reader.compressed else None
                rows_idx = np.array([r[2] for r in rows], dtype=np.int64)
                parts.append(engine.live_arrays(reader.segments[sid], rows_idx, codec, rescore))
                docs += [(r[0], r[1], len(docs) + j, r[3], r[4], json.loads(r[5])) for j, r in enumerate(rows)]
        if not parts:
            continue
        arrays = engine.with_ivf({name: np.concatenate([p[name] for p in parts]) for name in parts[0]}, reader.codec)
        written.append((write_segment(w.path, seg_id, arrays, len(docs), int(arrays["doclens"].sum())), docs))
        seg_id += 1
    store.pause_point("rewrite:segments-written")
    w.catalog.commit(written, drop_segments=sids)
    remove_orphans(w.path, {r[0]["id"] for r in written} | (records - set(sids)))
    reader.drop(sids)
    reader.refresh(force=True)


def train_when_due(w: "Writer") -> None:
    """Once a compressed index holds `train_tokens` float16 tokens, fit its codec to a sample of all of
    them (centroids sized for all of them) and encode them. Under the writer lock."""
    reader = w.reader
    if not reader.compressed or reader.codec is not None:
        return
    held = [(sid, engine.live_tokens(seg)) for sid, seg in reader.segments.items() if isinstance(seg, engine.ExactSegment)]
    total = sum(len(idx) for _, idx in held)
    if total < reader.train_tokens():
        return
    k = int(reader.manifest["storage"].get("n_centroids") or engine.default_centroids(total))
    # k-means looks at 32 points per centroid and the residual quantizer at 65,536: sample that many.
    pick = np.sort(np.random.default_rng(0).choice(total, size=min(total, max(32 * k, 1 << 16)), replace=False))
    bounds = np.cumsum([0] + [len(idx) for _, idx in held])
    sample = []
    for (sid, idx), lo, hi in zip(held, bounds[:-1], bounds[1:]):
        mine = pick[(pick >= lo) & (pick < hi)] - lo
        sample.append(engine.token_rows(reader.segments[sid], idx[mine]))
    train_codec(w, np.concatenate(sample), k, total)
    store.pause_point("train:codec-written")
    rewrite(w, [sid for sid, _ in held])


def train_codec(w: "Writer", sample: np.ndarray, n_centroids: int, trained_on: int) -> None:
    """Fit the codec to `sample`, drawn from `trained_on` tokens (the manifest records it before any
    segment uses it)."""
    reader = w.reader
    tmp = w.path / ".codec-tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    codec, entry = engine.train_codec(sample, reader.manifest["storage"]["nbits"], n_centroids, tmp)
    shutil.rmtree(w.path / "codec", ignore_errors=True)
    tmp.rename(w.path / "codec")
    store.fsync_dir(w.path)
    reader.manifest["codec"] = {**entry, "trained_on": trained_on}
    store.write_manifest(w.path, reader.manifest)
    reader.codec = codec


def warn_if_outgrown(w: "Writer", stacklevel: int) -> None:
    growth = w.reader.codec_growth()
    if growth and growth >= REFIT_GROWTH:
        warnings.warn(
            f"{w.path} holds {growth:.1f}x the tokens its codec was fitted to, which costs recall; "
            "for the best results, index the collection again into a new index", stacklevel=stacklevel)
