"""Plain files on disk: atomic writes, checksums, the manifest, the writer lock.

Every file is written to a temporary name in the same directory, fsynced, then renamed over
its final name, so a reader sees either the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from filelock import FileLock, Timeout

from lfm_colbert.errors import IndexBusyError, IndexFormatError, StorageError

FORMAT_NAME = "lfm-colbert-index"
# 2: a compressed index may hold float16 segments until its codec is trained.
# 3: versioned catalog rows (readers pin a state), an index id shared by manifest and catalog, and a
#    checksum of the manifest itself. Versions 1 and 2 are read as they are; the first write upgrades.
FORMAT_VERSION = 3
READS_VERSIONS = (1, 2, 3)
MANIFEST = "manifest.json"
CATALOG = "catalog.sqlite"
LOCK = ".lock"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")

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
    """Write to a temporary name, fsync, rename over `path`, fsync the directory."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # ours, written just now
        raise
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
    try:
        if checksum is not None and sha256_file(path) != checksum:
            raise IndexFormatError(
                f"corrupted index file {path}: its checksum does not match the one recorded when it was written"
            )
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise IndexFormatError(f"unreadable index file {path}: {exc}") from exc


def manifest_checksum(manifest: dict[str, Any]) -> str:
    body = {k: v for k, v in manifest.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def seal_manifest(manifest: dict[str, Any]) -> dict[str, Any]:
    """Set the manifest's checksum of its other keys (format 3 on); returns it."""
    manifest.pop("checksum", None)
    if manifest.get("version", 0) >= 3:
        manifest["checksum"] = manifest_checksum(manifest)
    return manifest


def canonical_manifest(manifest: dict[str, Any]) -> str:
    """The manifest as the catalog keeps a copy of it."""
    return json.dumps(seal_manifest(dict(manifest)), sort_keys=True, ensure_ascii=False)


def write_manifest(root: Path, manifest: dict[str, Any]) -> None:
    """Write the manifest atomically, with the checksum of its other keys (format 3 on)."""
    seal_manifest(manifest)
    write_bytes_atomic(root / MANIFEST, (json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode())


def read_manifest(root: Path) -> dict[str, Any]:
    """The manifest, its structure checked (and its checksum, format 3 on); an error naming it otherwise."""
    path = root / MANIFEST
    if not path.is_file():
        raise IndexFormatError(f"{root} is not an lfm-colbert index (no {MANIFEST})")
    try:
        manifest = json.loads(path.read_bytes().decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise IndexFormatError(f"corrupted manifest {path}: {exc}") from exc
    except OSError as exc:
        raise IndexFormatError(f"unreadable manifest {path}: {exc.strerror}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise IndexFormatError(f"{path} is not an lfm-colbert index manifest")
    if manifest.get("version") not in READS_VERSIONS:
        raise IndexFormatError(
            f"{path} has format version {manifest.get('version')}; this lfm-colbert reads versions "
            f"{', '.join(map(str, READS_VERSIONS))}"
        )
    if "checksum" in manifest or manifest["version"] >= 3:
        if manifest.get("checksum") != manifest_checksum(manifest):
            raise IndexFormatError(f"corrupted manifest {path}: its checksum does not match its contents "
                                   "(it changed since lfm-colbert wrote it)")
    problem = _manifest_problem(manifest)
    if problem:
        raise IndexFormatError(f"corrupted manifest {path}: {problem}")
    return manifest


def _manifest_problem(m: dict[str, Any]) -> str | None:
    """What is wrong with a manifest's structure, or None."""
    def count(v: Any, low: int = 1) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= low

    model, storage, codec = m.get("model"), m.get("storage"), m.get("codec", "missing")
    if not isinstance(model, dict) or not count(model.get("dim")):
        return "'model' must describe the model, with a positive integer 'dim'"
    if m.get("dim") != model["dim"]:
        return f"'dim' is {m.get('dim')!r}, the model's is {model['dim']!r}"
    if not isinstance(storage, dict) or storage.get("kind") not in ("float16", "plaid"):
        return "'storage' must say how vectors are stored (kind float16 or plaid)"
    nbits = storage.get("nbits")
    if (storage["kind"] == "plaid") != (nbits in (2, 4)) or (storage["kind"] == "float16" and nbits is not None):
        return f"storage kind {storage['kind']!r} with nbits {nbits!r}"
    if storage["kind"] == "plaid":
        if not isinstance(storage.get("rescore", False), bool):
            return "storage 'rescore' must be true or false"
        if storage.get("n_centroids") is not None and not count(storage["n_centroids"]):
            return "storage 'n_centroids' must be a positive integer"
        if m["version"] >= 2 and not count(storage.get("train_tokens")):
            return "storage 'train_tokens' must be a positive integer"
    if codec == "missing":
        return "no 'codec' entry"
    if codec is not None:
        if storage["kind"] != "plaid" or not isinstance(codec, dict):
            return "'codec' must be null for an exact index, or describe the trained codec"
        files = codec.get("files")
        if codec.get("nbits") != nbits or not count(codec.get("n_centroids")) or not isinstance(codec.get("format"), str):
            return f"codec entry {codec!r} does not match the storage"
        if not isinstance(files, dict) or not all(isinstance(c, str) and _HEX64.match(c) for c in files.values()):
            return "codec 'files' must map each codec file to its sha256"
    if m["version"] >= 3 and not (isinstance(m.get("index_id"), str) and m["index_id"]):
        return "no 'index_id'"
    return None


_HELD = threading.local()  # the index directories this thread holds the writer lock of
_MUTEXES: dict[str, threading.Lock] = {}
_MUTEXES_GUARD = threading.Lock()


@contextlib.contextmanager
def writer_lock(root: Path, wait: float = 0.0) -> Iterator[None]:
    """One writer at a time per index directory: an OS file lock (flock on POSIX, msvcrt on Windows)
    against other processes, and a mutex that makes threads of this process queue for it. Readers
    never wait. `wait`: seconds to wait for another process's lock before giving up."""
    key = os.path.abspath(root)
    held = _HELD.__dict__.setdefault("roots", set())
    if key in held:  # this thread is writing already (through another Index): it would wait for itself
        raise IndexBusyError(f"{root} is being written by another process; try again when it finishes "
                             "(here: by another write of this same thread)")
    with _MUTEXES_GUARD:
        mutex = _MUTEXES.setdefault(key, threading.Lock())
    with mutex:
        lock = FileLock(root / LOCK, timeout=wait)
        try:
            lock.acquire()
        except Timeout as exc:
            raise IndexBusyError(f"{root} is being written by another process; try again when it finishes") from exc
        except OSError as exc:
            raise StorageError(f"cannot write to the index {root}: {exc.strerror or exc} (is it read-only?)") from None
        held.add(key)
        try:
            yield
        finally:
            held.discard(key)
            lock.release()
