"""Move a collection between stores (embedded index <-> Qdrant) with its stored vectors: no re-encoding.

    >>> copy_documents("my-index", "qdrant+http://localhost:6333/docs")
    (12000, 0)                       # (copied, already there)

The target is created with the source's model description, so searching it with text later loads
the same model. A document already in the target under the same id is left as it is, never
overwritten, so a copy that was interrupted resumes when run again. A compressed index without
float16 vectors (compress without rescore) gives decoded, approximate vectors: the copy warns.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

from lfm_colbert.errors import IndexFormatError, InputError

PAGE = 256  # documents per read and write


def copy_documents(source: Any, target: Any, *, batch_size: int = PAGE, show_progress: bool | None = None) -> tuple[int, int]:
    """Copy every document of `source` into `target` (stores, or specs / paths opened with open_store);
    returns (copied, already in the target)."""
    from tqdm.auto import tqdm

    from lfm_colbert.stores import open_store

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be a positive integer, not {batch_size!r}")
    src = open_store(source, create=False) if isinstance(source, (str, os.PathLike)) else source
    src_info = src.info()
    model = src_info["model"]
    if str(source) == str(target):
        raise InputError("source and target are the same store")
    dst = open_store(target, model) if isinstance(target, (str, os.PathLike)) else target
    try:
        have = dst.info()["model"]
        for key in ("dim", "variant", "fingerprint"):
            if key in have and key in model and have[key] != model[key]:
                raise IndexFormatError(f"the target holds vectors of another model ({key} {have[key]!r}, the source's "
                                       f"is {model[key]!r}); copy into a new store")
        st = src_info["storage"]
        if st.get("nbits") and not st.get("rescore"):
            warnings.warn(f"{src_info['path']} keeps {st['nbits']}-bit codes only: the copied vectors are their "
                          "decoded approximations", stacklevel=2)
        copied = kept = 0
        bar = tqdm(total=src_info["documents"], desc="copying", unit="doc",
                   disable=None if show_progress is None else not show_progress)
        with dst.bulk():
            after = None
            while page := src.list(limit=batch_size, after=after):
                after = page[-1].id
                there = {d.id for d in dst.get([d.id for d in page]) if d is not None}
                todo = [d for d in page if d.id not in there]
                if todo:
                    # upsert=False: a passage's parent must not make the target drop its siblings that
                    # an earlier page copied (upsert replaces every passage of a parent).
                    dst.add_vectors(src.vectors([d.id for d in todo]), ids=[d.id for d in todo],
                                    texts=[d.text for d in todo], metadata=[d.metadata for d in todo],
                                    parents=[d.parent for d in todo])
                copied += len(todo)
                kept += len(page) - len(todo)
                bar.update(len(page))
        bar.close()
        return copied, kept
    finally:
        if dst is not target:
            dst.close()
        if src is not source:
            src.close()
