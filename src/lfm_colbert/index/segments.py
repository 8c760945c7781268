"""Segments: immutable directories of .npy arrays, one per add (or per compaction).

    segments/000001/doclens.npy     (n_docs,) int32      tokens per document
    exact:      vectors.npy         (N_tok, D) float16
    compressed: codes.npy           (N_tok,) uint16      nearest centroid
                residuals.npy       (N_tok, D*b/8) uint8 packed residual buckets
                ivf_offsets.npy     (K + 1,) int64       inverted lists: centroid -> rows
                ivf_docs.npy        (pairs,) int32
                vectors.npy         (N_tok, D) float16   only with rescore: the final candidates' scores

A segment is written under a temporary name and renamed into place; it counts only once the
catalog (SQLite) row that names it commits. Its id is reserved in the catalog first (a "pending"
row), so the directories of a writer that died are known for what they are and removed by the
next writer; a directory the catalog never named is never touched.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from lfm_colbert.index.store import fsync_dir, load_npy, save_npy

SEGMENTS = "segments"


def segment_dir(root: Path, seg_id: int) -> Path:
    return root / SEGMENTS / f"{seg_id:06d}"


def _tmp_dir(root: Path, seg_id: int) -> Path:
    return root / SEGMENTS / f".tmp-{seg_id:06d}"


def taken_ids(root: Path) -> set[int]:
    """Segment ids whose directory name (final or temporary) exists on disk."""
    parent = root / SEGMENTS
    if not parent.is_dir():
        return set()
    out = set()
    for p in parent.iterdir():
        name = p.name[len(".tmp-"):].split("-")[0] if p.name.startswith(".tmp-") else p.name
        if name.isdigit():
            out.add(int(name))
    return out


def write_segment(root: Path, seg_id: int, arrays: dict[str, np.ndarray], n_docs: int, n_tokens: int) -> dict[str, Any]:
    """Write arrays as <name>.npy into segments/<id> (an id the catalog reserved for this write);
    returns the catalog record (with sha256 per file)."""
    parent = root / SEGMENTS
    if not parent.is_dir():
        parent.mkdir()
        fsync_dir(root)
    final, tmp = segment_dir(root, seg_id), _tmp_dir(root, seg_id)
    tmp.mkdir()  # the reservation made sure neither name exists
    files = {f"{name}.npy": save_npy(tmp / f"{name}.npy", arr) for name, arr in arrays.items()}
    fsync_dir(tmp)
    os.rename(tmp, final)
    fsync_dir(parent)
    return {"id": seg_id, "n_docs": n_docs, "n_tokens": n_tokens, "files": files, "created": time.time()}


def read_segment(root: Path, record: dict[str, Any], verify: bool, mmap: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Load a segment's arrays; with verify, each file's sha256 must match the catalog's."""
    d = segment_dir(root, record["id"])
    out = {}
    for fname, checksum in record["files"].items():
        name = fname[: -len(".npy")]
        out[name] = load_npy(d / fname, checksum if verify else None, mmap=name in mmap)
    return out


def remove_segment(root: Path, seg_id: int) -> bool:
    """Delete the directories (final and temporary) of a segment the catalog shows as ours to delete:
    retired and no longer read, or reserved by a writer that died. True once nothing is left (a file
    still open elsewhere cannot be deleted on Windows: try again later)."""
    parent = root / SEGMENTS
    if not parent.is_dir():
        return True
    doomed = [segment_dir(root, seg_id), _tmp_dir(root, seg_id)]
    doomed += [p for p in parent.glob(f".tmp-{seg_id:06d}-*")]  # written by lfm-colbert 0.1.0
    for p in doomed:
        if p.exists():
            shutil.rmtree(p, ignore_errors=True)
    return not any(p.exists() for p in doomed)
