"""An index directory's lifecycle: creating it, opening it, and the model it was built with.

Creation runs under the writer lock and is marked: `.creating` is written first and removed last,
after the manifest. A marker found later (by the next creator, under the lock) proves that what
it lists is an unfinished creation's own, so only then is anything in the directory removed. A
directory that holds index data but no manifest is an error that says how to recover, never a
new index.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
from pathlib import Path
from typing import Any, Mapping

from lfm_colbert.checkpoint import MODEL_ENV_VAR
from lfm_colbert.errors import CheckpointError, IndexFormatError, InputError, StorageError
from lfm_colbert.index import pins, schema, store
from lfm_colbert.index.segments import SEGMENTS

MARKER = ".creating"
# Seconds a creator waits for another process creating (or writing) the same directory.
CREATE_WAIT_S = 30.0
_DATA = {store.CATALOG, store.CATALOG + "-journal", SEGMENTS, "codec", pins.READERS}


def describe(model: Any) -> dict[str, Any]:
    """What the manifest records about a model (a loaded ColBERT, or a dict like its `describe()`)."""
    if isinstance(model, Mapping):
        desc = dict(model)
    else:
        desc = dict(model.describe())
    if not isinstance(desc.get("dim"), int) or isinstance(desc.get("dim"), bool) or desc["dim"] <= 0:
        raise InputError("the model description needs a positive integer 'dim'")
    try:
        json.dumps(desc, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InputError(f"the model description must be plain JSON: {exc}") from None
    return desc


def load_model(spec: str | None, dtype: str | None = None, backend: str = "auto", device: str | None = None) -> Any:
    from lfm_colbert.encoder import ColBERT

    return ColBERT(model=spec, dtype=dtype, backend=backend, device=device)


def is_model_spec(model: Any) -> bool:
    return isinstance(model, (str, os.PathLike))


def check_model(path: Path, manifest: Mapping[str, Any], desc: Mapping[str, Any]) -> None:
    """Refuse a model other than the one the index was built with."""
    have = manifest["model"]
    for key in ("dim", "variant", "fingerprint"):
        if key in have and key in desc and have[key] != desc[key]:
            raise IndexFormatError(
                f"{path} was built with model {have.get('model_id')!r} ({key} {have[key]!r}); "
                f"the model given is {desc.get('model_id')!r} ({key} {desc[key]!r}). "
                "Search an index with the model that built it, or build a new index."
            )


def load_recorded_model(path: Path, manifest: Mapping[str, Any], spec: str | None, placement: Mapping[str, Any]) -> Any:
    """The model given (`spec`), else $LFM_COLBERT_MODEL (say, a local copy), else the one the index
    records; always checked against the index's model fingerprint."""
    origin = "given"
    if not spec and os.environ.get(MODEL_ENV_VAR):
        spec, origin = os.environ[MODEL_ENV_VAR], f"from ${MODEL_ENV_VAR}"
    elif not spec:
        spec, origin = manifest["model"].get("model_id"), f"recorded in {path / store.MANIFEST}"
    if not spec:
        raise InputError(f"{path} holds precomputed vectors and records no model: give one to encode text "
                         f"(--model on the command line, model= in Python, or ${MODEL_ENV_VAR})")
    try:  # Queries are encoded at the precision the documents were (when the index recorded it).
        model = load_model(spec, manifest["model"].get("dtype"), **placement)
        check_model(path, manifest, describe(model))
    except (CheckpointError, IndexFormatError) as exc:
        raise type(exc)(f"{exc} (model {spec!r} {origin}; point elsewhere with --model PATH or "
                        f"{MODEL_ENV_VAR}=PATH, checked against the index's model fingerprint)") from None
    return model


def check_new_options(compress: Any, train_tokens: Any, n_centroids: Any) -> None:
    """The creation options' types and ranges, checked before anything is read or written."""
    if compress not in (None, 2, 4) or isinstance(compress, bool):
        raise InputError(f"compress must be 2 or 4 (bits per dimension), not {compress!r}")
    if train_tokens is not None and (isinstance(train_tokens, bool) or not isinstance(train_tokens, int) or train_tokens < 1):
        raise InputError(f"train_tokens must be a positive integer, not {train_tokens!r}")
    if n_centroids is not None and (isinstance(n_centroids, bool) or not isinstance(n_centroids, int) or not 1 <= n_centroids <= 1 << 16):
        raise InputError(f"n_centroids must be an integer from 1 to 65536, not {n_centroids!r}")


def check_options(path: Path, manifest: Mapping[str, Any], compress: int | None, rescore: bool, train_tokens: int | None) -> None:
    """Options fixed at creation, given again to an existing index, must be what it was created with."""
    have = manifest["storage"].get("nbits")
    if compress is not None and compress != have:
        kind = f"{have}-bit compressed" if have else "exact (uncompressed)"
        raise InputError(f"{path} is an existing {kind} index; compression is chosen at creation")
    if rescore and not manifest["storage"].get("rescore"):
        raise InputError(f"{path} keeps no float16 vectors to rescore with; rescore is chosen at creation")
    if train_tokens is not None and not have:
        raise InputError(f"{path} is an exact index; train_tokens applies to compressed indexes")
    held = manifest["storage"].get("train_tokens", 1)
    if train_tokens is not None and train_tokens != held:
        raise InputError(f"{path} trains its codec at {held} tokens; train_tokens is chosen at creation")


def existing_manifest(path: Path) -> dict[str, Any] | None:
    """The manifest of the index at `path`; None where there is no index (nothing of one, or an
    unfinished creation); an error where there is index data without a manifest."""
    if (path / store.MANIFEST).is_file():
        return store.read_manifest(path)
    if path.is_dir() and not (path / MARKER).exists():
        data = _index_data(path)
        if data:
            raise IndexFormatError(
                f"{path} holds index data ({', '.join(data)}) but no {store.MANIFEST}: it was deleted, renamed "
                f"or not copied. Nothing was changed. Restore {store.MANIFEST} from a backup or copy of this "
                f"index, or rewrite it from the copy its catalog keeps: python -m lfm_colbert.index.restore {path}")
    return None


def _index_data(path: Path) -> list[str]:
    try:
        names = os.listdir(path)
    except OSError as exc:
        raise StorageError(f"cannot read {path}: {exc.strerror}") from None
    return sorted(n for n in names if n in _DATA or n.startswith((".codec-tmp", f".{store.MANIFEST}.tmp")))


def create(path: Path, desc: Mapping[str, Any], storage: dict[str, Any]) -> tuple[dict[str, Any], bool, bool]:
    """Make `path` a new, empty index. Returns its manifest, whether this call created the index (else
    another process did while this one waited for its lock) and whether it made the directory."""
    if path.exists() and not path.is_dir():
        raise InputError(f"{path} exists and is not a directory")
    made = False
    if not path.is_dir():
        try:
            path.mkdir(parents=True)
            made = True
            store.fsync_dir(path.parent)
        except FileExistsError:
            if not path.is_dir():
                raise InputError(f"{path} exists and is not a directory") from None
        except OSError as exc:
            raise StorageError(f"cannot create the index directory {path}: {exc.strerror or exc}") from None
    with store.writer_lock(path, wait=CREATE_WAIT_S):
        manifest = existing_manifest(path)  # another process created it while this one waited
        if manifest is not None:
            return manifest, False, made
        if (path / MARKER).exists():
            _clear_unfinished_creation(path)
        foreign = [n for n in os.listdir(path) if not n.startswith(".")]
        if foreign:
            raise InputError(f"{path} exists and is not an lfm-colbert index (it holds {foreign[0]!r}, ...)")
        index_id = schema.new_index_id()
        store.write_bytes_atomic(path / MARKER, json.dumps({"index_id": index_id, "pid": os.getpid()}).encode())
        for name in (SEGMENTS, pins.READERS):
            (path / name).mkdir()
        store.fsync_dir(path)
        manifest = {
            "format": store.FORMAT_NAME,
            "version": store.FORMAT_VERSION,
            "index_id": index_id,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "model": dict(desc),
            "dim": desc["dim"],
            "storage": storage,
            "codec": None,
        }
        schema.create(path / store.CATALOG, index_id, store.canonical_manifest(manifest))
        store.fsync_dir(path)
        store.pause_point("create:catalog-written")
        store.write_manifest(path, manifest)  # the manifest is what makes it an index
        (path / MARKER).unlink()
        store.fsync_dir(path)
    return store.read_manifest(path), True, made


def _clear_unfinished_creation(path: Path) -> None:
    """Remove what a creator that died (its marker still there, its lock released) made: an empty
    catalog and empty folders. Anything more means it was no unfinished creation: stop."""
    catalog = path / store.CATALOG
    if catalog.exists() and catalog.stat().st_size > 0:
        try:
            from lfm_colbert.index.metadata import Catalog

            cat = Catalog(catalog)
            pristine = cat.generation() == 0 and cat.counts() == (0, 0) and not cat.segments() and not cat.pending()
            cat.close()
        except IndexFormatError:
            pristine = True  # died while SQLite wrote the schema: nothing else can be in it
        if not pristine:
            raise IndexFormatError(f"{path} holds a creation marker ({MARKER}) but its catalog holds data; "
                                   f"nothing was changed: remove {path / MARKER} if this index is otherwise fine")
    for name in (SEGMENTS, pins.READERS):
        folder = path / name
        if folder.is_dir() and any(p.suffix != ".pin" for p in folder.iterdir()):
            raise IndexFormatError(f"{path} holds a creation marker ({MARKER}) but {folder} is not empty; nothing was changed")
    for name in (store.CATALOG, store.CATALOG + "-journal", MARKER):
        (path / name).unlink(missing_ok=True)
    for name in (SEGMENTS, pins.READERS):
        shutil.rmtree(path / name, ignore_errors=True)
    store.fsync_dir(path)


def discard(path: Path, index_id: str, made_dir: bool) -> bool:
    """Undo this process's creation of an index nothing was written to (a command that failed before
    its first add). Removes only what creation made; False (and nothing removed) if the index holds
    anything, or is not the one created."""
    from lfm_colbert.index.metadata import Catalog

    with store.writer_lock(path):
        manifest = store.read_manifest(path)
        if manifest.get("index_id") != index_id:
            return False
        cat = Catalog(path / store.CATALOG, index_id)
        try:
            pristine = cat.generation() == 0 and cat.counts() == (0, 0) and not cat.segments() and not cat.pending()
        finally:
            cat.close()
        if not pristine or any(n not in (*_DATA, store.MANIFEST) and not n.startswith(".") for n in os.listdir(path)):
            return False
        store.write_bytes_atomic(path / MARKER, json.dumps({"index_id": index_id, "discarding": True}).encode())
        (path / store.MANIFEST).unlink()
        store.fsync_dir(path)
        _clear_unfinished_creation(path)
    (path / store.LOCK).unlink(missing_ok=True)
    if made_dir:
        try:
            path.rmdir()
        except OSError:
            pass  # something else appeared meanwhile: leave it
    return True
