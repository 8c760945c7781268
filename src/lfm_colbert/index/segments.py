"""Segments: immutable directories of .npy arrays, one per add (or per compaction).

    segments/000001/doclens.npy     (n_docs,) int32      tokens per document
    exact:      vectors.npy         (N_tok, D) float16
    compressed: codes.npy           (N_tok,) uint16      nearest centroid
                residuals.npy       (N_tok, D*b/8) uint8 packed residual buckets
                ivf_offsets.npy     (K + 1,) int64       inverted lists: centroid -> rows
                ivf_docs.npy        (pairs,) int32
                vectors.npy         (N_tok, D) float16   only with rescore: the final candidates' scores

A segment is written under a temporary name and renamed into place; it counts only once the
catalog (SQLite) row that names it commits. Directories the catalog does not name are leftovers
of an interrupted write and are removed by the next writer.
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


def write_segment(root: Path, seg_id: int, arrays: dict[str, np.ndarray], n_docs: int, n_tokens: int) -> dict[str, Any]:
    """Write arrays as <name>.npy into segments/<id>; returns the catalog record (with sha256 per file)."""
    parent = root / SEGMENTS
    parent.mkdir(exist_ok=True)
    final = segment_dir(root, seg_id)
    tmp = parent / f".tmp-{seg_id:06d}-{os.getpid()}"
    for stale in (tmp, final):  # leftovers of an interrupted writer, never referenced by the catalog
        if stale.exists():
            shutil.rmtree(stale)
    tmp.mkdir()
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


def remove_orphans(root: Path, known: set[int]) -> None:
    """Delete segment directories the catalog does not reference (interrupted writes, compacted segments)."""
    parent = root / SEGMENTS
    if not parent.is_dir():
        return
    for p in parent.iterdir():
        if p.name.startswith(".tmp-") or (p.name.isdigit() and int(p.name) not in known):
            shutil.rmtree(p, ignore_errors=True)


def next_segment_id(root: Path, known: set[int]) -> int:
    parent = root / SEGMENTS
    on_disk = {int(p.name) for p in parent.iterdir() if p.name.isdigit()} if parent.is_dir() else set()
    return max(known | on_disk | {0}) + 1
