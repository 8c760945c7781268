"""An index directory's lifecycle: creating it, opening it, and the model it was built with."""

from __future__ import annotations

import datetime as _dt
import os
import shutil
from pathlib import Path
from typing import Any, Mapping

from lfm_colbert.errors import IndexFormatError, InputError
from lfm_colbert.index import store
from lfm_colbert.index.metadata import Catalog

_OWN_FILES = {store.MANIFEST, store.CATALOG, store.CATALOG + "-journal", store.LOCK, "segments", "codec"}


def describe(model: Any) -> dict[str, Any]:
    """What the manifest records about a model (a loaded ColBERT, or a dict like its `describe()`)."""
    if isinstance(model, Mapping):
        desc = dict(model)
    else:
        desc = dict(model.describe())
    if not isinstance(desc.get("dim"), int) or desc["dim"] <= 0:
        raise InputError("the model description needs a positive integer 'dim'")
    return desc


def load_model(spec: str | None, dtype: str | None = None, backend: str = "auto", device: str | None = None) -> Any:
    from lfm_colbert.encoder import ColBERT

    return ColBERT(model=spec, dtype=dtype, backend=backend, device=device)


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


def create(
    path: Path, desc: Mapping[str, Any], compress: int | None, n_centroids: int | None, rescore: bool, train_tokens: int
) -> dict[str, Any]:
    """Make `path` a new, empty index; returns its manifest."""
    if path.exists() and not path.is_dir():
        raise InputError(f"{path} exists and is not a directory")
    if path.is_dir():
        foreign = [p.name for p in path.iterdir() if p.name not in _OWN_FILES and not p.name.startswith(".")]
        if foreign:
            raise InputError(f"{path} exists and is not an lfm-colbert index (it holds {foreign[0]!r}, ...)")
        for name in ("segments", "codec", store.CATALOG, store.CATALOG + "-journal"):  # an interrupted creation
            p = path / name
            shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    path.mkdir(parents=True, exist_ok=True)
    Catalog(path / store.CATALOG, create=True).close()
    manifest = {
        "format": store.FORMAT_NAME,
        "version": store.FORMAT_VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "model": dict(desc),
        "dim": desc["dim"],
        "storage": {"kind": "plaid", "nbits": compress, "n_centroids": n_centroids, "rescore": bool(rescore),
                    "train_tokens": train_tokens}
        if compress
        else {"kind": "float16", "nbits": None},
        "codec": None,
    }
    store.write_manifest(path, manifest)  # last: the manifest is what makes it an index
    return manifest


def is_model_spec(model: Any) -> bool:
    return isinstance(model, (str, os.PathLike))
