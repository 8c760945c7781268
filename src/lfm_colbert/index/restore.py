"""Rewrite a lost manifest.json from the copy the catalog keeps (format 3 indexes).

    python -m lfm_colbert.index.restore DIR

Only when DIR has no manifest.json: an existing one is never overwritten.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from lfm_colbert.errors import IndexFormatError, LfmColbertError
from lfm_colbert.index import store


def restore_manifest(path: str | Path) -> Path:
    """Write DIR/manifest.json from the catalog's copy; returns its path."""
    from lfm_colbert.index.metadata import Catalog

    root = Path(path)
    target = root / store.MANIFEST
    if target.exists():
        raise IndexFormatError(f"{target} exists; it is never overwritten")
    catalog = Catalog(root / store.CATALOG)
    try:
        if catalog.version == 1:
            raise IndexFormatError(f"{root / store.CATALOG} was written before catalogs kept a copy of the manifest")
        copy, index_id = catalog.get_meta("manifest"), catalog.get_meta("index_id")
    finally:
        catalog.close()
    try:
        manifest = json.loads(copy or "")
    except ValueError:
        raise IndexFormatError(f"{root / store.CATALOG} keeps no readable copy of the manifest") from None
    if not isinstance(manifest, dict) or manifest.get("index_id") != index_id:
        raise IndexFormatError(f"the manifest copy in {root / store.CATALOG} is not this catalog's")
    with store.writer_lock(root):
        store.write_manifest(root, manifest)
        try:
            store.read_manifest(root)  # checksum and structure, as any open checks them
        except IndexFormatError:
            target.unlink()
            raise
    return target


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m lfm_colbert.index.restore DIR", file=sys.stderr)
        return 2
    try:
        print(f"restored {restore_manifest(args[0])}")
    except LfmColbertError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
