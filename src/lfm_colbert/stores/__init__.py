"""Where a collection lives: an embedded index directory, or a Qdrant collection, behind one API.

    >>> from lfm_colbert.stores import open_store, copy_documents
    >>> store = open_store("my-index")                              # lfm_colbert.index.Index
    >>> store = open_store("qdrant+http://localhost:6333/docs")     # lfm_colbert.stores.qdrant.QdrantStore
    >>> copy_documents("my-index", "qdrant+http://localhost:6333/docs")   # no re-encoding

Both have add / add_vectors / upsert / delete / search / search_vectors / get / list / vectors /
unchanged / bulk / info / close. The CLI resolves every index argument through `open_store`.
"""

from __future__ import annotations

import json
import os
from typing import Any

from lfm_colbert.errors import InputError
from lfm_colbert.stores.spec import StoreSpec, is_store_spec, parse_spec

__all__ = ["StoreSpec", "copy_documents", "describe_store", "is_store_spec", "open_store", "parse_spec"]

# Options that only the embedded index has, and only Qdrant stores have.
_INDEX_ONLY = ("compress", "n_centroids", "rescore", "train_tokens")
_QDRANT_ONLY = ("dense", "prefetch", "client", "api_key", "upload_points", "upload_bytes", "retries")


def open_store(spec: str | os.PathLike, model: Any = None, **options: Any) -> Any:
    """An `Index` for a directory, a `QdrantStore` for a `qdrant+...` string (see lfm_colbert.stores.spec).

    `options` are the constructor's keyword arguments (create, backend, device, and compress /
    rescore / ... for an index, dense / prefetch / ... for Qdrant); one the other kind has not is
    an error when set, except `verify`, which a Qdrant store has no files to apply to.
    """
    if is_store_spec(str(spec)):
        for name in _INDEX_ONLY:
            if options.pop(name, None):
                flag = "--" + name.replace("_", "-")
                raise InputError(f"{name} ({flag}) applies to an embedded index; a Qdrant collection stores "
                                 "float16 multivectors and searches them exactly")
        options.pop("verify", None)
        from lfm_colbert.stores.qdrant import QdrantStore

        return QdrantStore(str(spec), model, **options)
    for name in _QDRANT_ONLY:
        if options.get(name) is not None:
            raise InputError(f"{name} applies to a Qdrant store (qdrant+http://..., qdrant+path:..., qdrant+edge:...)")
        options.pop(name, None)
    from lfm_colbert.index import Index

    return Index(spec, model, **options)


def copy_documents(source: Any, target: Any, **kw: Any) -> tuple[int, int]:
    """Copy every document from one store to another without encoding (see lfm_colbert.stores.copy)."""
    from lfm_colbert.stores.copy import copy_documents as copy

    return copy(source, target, **kw)


def describe_store(spec: str, as_json: bool = False, verify: bool = False) -> int:
    """`lfm-colbert info` for a Qdrant store: print what it holds; returns the exit status."""
    store = open_store(spec, create=False)
    try:
        info = store.info()
    finally:
        store.close()
    if verify:
        info["verified"] = True  # opening checked the recorded model and the vector layout
    if as_json:
        print(json.dumps(info, indent=2, ensure_ascii=False))
        return 0
    model, st = info["model"], info["storage"]
    tok = st["vectors"].get("colbert", {})
    dense = ""
    if st["dense"]:
        use = f"searches rank {st['prefetch']} candidates" if st["prefetch"] else "searches scan everything unless given ?prefetch=N"
        dense = f"; dense prefetch vectors ({use})"
    tokens = f"{info['tokens']:,} tokens" if info["tokens"] is not None else "tokens not counted above 100,000 documents"
    print(f"store      {info['path']} (Qdrant {info['engine']}, format {info['format_version']}, created {info['created']})")
    print(f"model      {model.get('model_id')} ({model.get('variant')}, dim {model.get('dim')}, "
          f"fingerprint {model.get('fingerprint')})")
    print(f"storage    float16 MaxSim multivector, HNSW m={tok.get('hnsw_m')} (exact scan){dense}")
    print(f"documents  {info['documents']:,} ({tokens})" + (f" in {info['segments']} segment(s)" if info["segments"] else ""))
    if info["bytes_on_disk"] is not None:
        print(f"size       {info['bytes_on_disk']:,} bytes on disk")
    if verify:
        print("verified   the recorded model and the vector layout match")
    return 0
