"""Plain files on disk: atomic writes, checksums, the manifest, the writer lock.

Every file is written to a temporary name in the same directory, fsynced, then renamed over
its final name, so a reader sees either the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from filelock import FileLock, Timeout

from lfm_colbert.errors import IndexFormatError

FORMAT_NAME = "lfm-colbert-index"
# 2: a compressed index may hold float16 segments until its codec is trained. Version 1 is read as is.
FORMAT_VERSION = 2
READS_VERSIONS = (1, 2)
MANIFEST = "manifest.json"
CATALOG = "catalog.sqlite"
LOCK = ".lock"

# Tests set this to a point name ("add:segment-written", ...) to freeze a writer there and kill it.
_PAUSE_ENV = "LFM_COLBERT_PAUSE_AT"


def pause_point(name: str) -> None:
    """Test hook: when LFM_COLBERT_PAUSE_AT names this point, announce it and sleep (to be killed)."""
    if os.environ.get(_PAUSE_ENV) == name:
        print(f"paused at {name}", flush=True)
        sys.stdout.flush()
        time.sleep(600)


def fsync_dir(path: Path) -> None:
    """Make a rename in `path` durable. Windows cannot open a directory to fsync it (NTFS journals
    renames itself), so there this does nothing."""
    if os.name == "nt":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def write_bytes_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def save_npy(path: Path, array: np.ndarray) -> str:
    """Write one .npy file (fsynced) and return its sha256."""
    with open(path, "wb") as f:
        np.save(f, np.ascontiguousarray(array), allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())
    return sha256_file(path)


def load_npy(path: Path, checksum: str | None = None, mmap: bool = False) -> np.ndarray:
    """Read a .npy file; with a checksum, refuse a file whose bytes changed since it was written."""
    if not path.is_file():
        raise IndexFormatError(f"missing index file {path}")
    if checksum is not None and sha256_file(path) != checksum:
        raise IndexFormatError(
            f"corrupted index file {path}: its checksum does not match the one recorded when it was written"
        )
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise IndexFormatError(f"unreadable index file {path}: {exc}") from exc


def write_manifest(root: Path, manifest: dict[str, Any]) -> None:
    write_bytes_atomic(root / MANIFEST, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())


def read_manifest(root: Path) -> dict[str, Any]:
    path = root / MANIFEST
    if not path.is_file():
        raise IndexFormatError(f"{root} is not an lfm-colbert index (no {MANIFEST})")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise IndexFormatError(f"corrupted manifest {path}: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise IndexFormatError(f"{path} is not an lfm-colbert index manifest")
    if manifest.get("version") not in READS_VERSIONS:
        raise IndexFormatError(
            f"{path} has format version {manifest.get('version')}; this lfm-colbert reads versions "
            f"{', '.join(map(str, READS_VERSIONS))}"
        )
    return manifest


@contextlib.contextmanager
def writer_lock(root: Path) -> Iterator[None]:
    """One writer at a time per index directory (an OS file lock: flock on POSIX, msvcrt on Windows;
    readers never wait)."""
    lock = FileLock(root / LOCK, timeout=0)
    try:
        lock.acquire()
    except Timeout as exc:
        raise IndexFormatError(f"{root} is being written by another process; try again when it finishes") from exc
    try:
        yield
    finally:
        lock.release()
