"""Work a writer does after its commit, under the same lock hold: training a compressed index's codec,
compacting deleted documents away, merging small segments, and purging what no reader needs.

None of it can turn the committed write into an error: a failure here is a warning, and the next
write tries again.
"""

from __future__ import annotations

import math
import os
import shutil
import uuid
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from lfm_colbert.errors import IndexFormatError
from lfm_colbert.index import engine, pins, store
from lfm_colbert.index.segments import remove_segment

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


def after_commit(w: "Writer", train: bool = True) -> None:
    """Everything due after a commit; failures become warnings (the commit stands)."""
    try:
        if train:
            train_when_due(w)
        compact_if_due(w)
        while True:
            state = w.reader.current()
            group = merge_group([state.records[s] for s in state.order])
            if not group:
                break
            rewrite(w, group, merge=True)
    except Exception as exc:  # noqa: BLE001 - the write is committed; this is housekeeping
        warnings.warn(f"{w.path}: the write was saved, but the maintenance after it failed ({exc}); "
                      "the next write tries again", stacklevel=4)
    try:
        purge(w)
    except Exception as exc:  # noqa: BLE001
        warnings.warn(f"{w.path}: could not remove files no longer used ({exc}); the next write tries again", stacklevel=4)


def merge_group(records: list[dict[str, Any]]) -> list[int]:
    """MERGE_FANIN small segments of one kind and size tier (oldest first), or none."""
    tiers: dict[tuple[bool, int], list[int]] = {}
    for r in records:
        if r["n_tokens"] * MERGE_FANIN < SEGMENT_TOKENS:
            tier = int(math.log(max(r["n_tokens"], 1), MERGE_FANIN))
            tiers.setdefault((engine.is_coded(r), tier), []).append(r["id"])
    return next((sids[:MERGE_FANIN] for sids in tiers.values() if len(sids) >= MERGE_FANIN), [])


def compact_if_due(w: "Writer") -> None:
    """Compact when deleted documents hold too much, or float16 segments wait for a trained codec."""
    state = w.reader.current()
    live = w.catalog.counts(state.generation)[1]
    stored = sum(r["n_tokens"] for r in state.records.values())
    held = state.codec is not None and not all(map(engine.is_coded, state.records.values()))
    if held or (stored and 1 - live / stored > COMPACT_AT):
        compact(w)


def compact(w: "Writer") -> None:
    """Rewrite segments that hold deleted documents (and encode float16 segments once a codec exists).
    Under the writer lock."""
    state = w.reader.current()
    trained = state.codec is not None
    rewrite(w, [sid for sid in state.order
                if not state.segments[sid].alive.all() or (trained and isinstance(state.segments[sid], engine.ExactSegment))])


def rewrite(w: "Writer", sids: list[int], merge: bool = False) -> None:
    """Replace segments `sids` by copies of their live documents (all in one segment with `merge`), in
    one commit. A float16 segment of a compressed index with a trained codec is encoded on the way.
    What is copied is checked first (checksums, row checksums): a damaged file is never re-signed."""
    if not sids:
        return
    state = w.reader.current()
    rescore = bool(state.manifest["storage"].get("rescore"))
    codec = state.codec
    dim = state.manifest["dim"]
    written = []
    with w.reserving():
        for group in [sids] if merge else [[sid] for sid in sids]:
            parts, docs = [], []
            for sid in group:
                rows = w.catalog.rows_of_segment(sid, state.generation)
                if not rows:
                    continue
                seg = state.segments[sid]
                if not w.reader.verify:  # the reader loaded it unchecked: check before copying
                    seg = engine.open_segment(w.path, state.records[sid], True, dim, codec)
                idx = np.array([r[2] for r in rows], dtype=np.int64)
                parts.append(engine.live_arrays(seg, idx, codec, rescore))
                docs += [(r[0], r[1], len(docs) + j, r[3], r[4], r[5]) for j, r in enumerate(rows)]
            if not parts:
                continue
            arrays = engine.with_ivf({name: np.concatenate([p[name] for p in parts]) for name in parts[0]}, codec)
            written.append((w.write_segment(state, [], arrays, len(docs)), docs))
        store.pause_point("rewrite:segments-written")
        w.catalog.commit(written, drop_segments=sids, pause=lambda: store.pause_point("rewrite:before-commit"))
    store.pause_point("rewrite:committed")


def train_when_due(w: "Writer") -> None:
    """Once a compressed index holds `train_tokens` float16 tokens, fit its codec to a sample of all of
    them (centroids sized for all of them) and encode them. Under the writer lock."""
    state = w.reader.current()
    if not state.compressed or state.codec is not None:
        return
    held = [(sid, engine.live_tokens(state.segments[sid])) for sid in state.order
            if isinstance(state.segments[sid], engine.ExactSegment)]
    total = sum(len(idx) for _, idx in held)
    if total < state.manifest["storage"].get("train_tokens", 1):
        return
    k = int(state.manifest["storage"].get("n_centroids") or engine.default_centroids(total))
    # k-means looks at KMEANS_POINTS points per centroid and the residual quantizer at 65,536: sample that many.
    want = max(engine.KMEANS_POINTS * k, 1 << 16)
    pick = np.sort(np.random.default_rng(0).choice(total, size=min(total, want), replace=False))
    bounds = np.cumsum([0] + [len(idx) for _, idx in held])
    sample = []
    for (sid, idx), lo, hi in zip(held, bounds[:-1], bounds[1:]):
        mine = pick[(pick >= lo) & (pick < hi)] - lo
        sample.append(engine.token_rows(state.segments[sid], idx[mine]))
    train_codec(w, state.manifest, np.concatenate(sample), k, total)
    store.pause_point("train:codec-written")
    rewrite(w, [sid for sid, _ in held])


def train_codec(w: "Writer", manifest: dict[str, Any], sample: np.ndarray, n_centroids: int, trained_on: int) -> None:
    """Fit the codec to `sample`, drawn from `trained_on` tokens. The catalog records the training
    first (a writer killed during it leaves files the next one knows to remove); the manifest
    naming the codec is the commit point, before any segment uses it."""
    from lfm_colbert.index.writer import publish_manifest

    final = w.path / "codec"
    if final.exists():
        raise IndexFormatError(f"{final} exists but the manifest names no codec; move it out of the index and write again")
    tmp = w.path / f".codec-tmp-{uuid.uuid4().hex}"
    w.catalog.set_meta("codec_pending", tmp.name)
    try:
        _, entry = engine.train_codec(sample, manifest["storage"]["nbits"], n_centroids, tmp)
        store.fsync_dir(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # ours, and named by nothing
        raise
    store.pause_point("train:codec-saved")
    os.rename(tmp, final)
    store.fsync_dir(w.path)
    store.pause_point("train:codec-renamed")
    publish_manifest(w, {**manifest, "codec": {**entry, "trained_on": trained_on}})
    w.catalog.set_meta("codec_pending", None)


def purge(w: "Writer") -> None:
    """Delete the rows and segment files that commits retired and no reader's pinned state needs."""
    gen = w.catalog.generation()
    oldest = pins.oldest(w.path)
    upto = gen if oldest is None else min(gen, oldest)
    retired = w.catalog.retired(upto)
    if not retired and not w.catalog.has_removed(upto):
        return
    gone = [sid for sid in retired if remove_segment(w.path, sid)]
    store.pause_point("purge:files-removed")
    w.catalog.purge(upto, gone)


def warn_if_outgrown(w: "Writer", stacklevel: int) -> None:
    manifest = w.reader.manifest
    trained = (manifest.get("codec") or {}).get("trained_on")
    if not trained:
        return
    growth = w.catalog.counts()[1] / trained
    if growth >= REFIT_GROWTH:
        warnings.warn(
            f"{w.path} holds {growth:.1f}x the tokens its codec was fitted to, which costs recall; "
            "for the best results, index the collection again into a new index", stacklevel=stacklevel)
