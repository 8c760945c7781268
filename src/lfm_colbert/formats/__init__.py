"""Readers for the document formats `lfm-colbert index` takes beyond plain text and JSON Lines.

Each needs an optional package, imported only when a file of its kind is read:

    html.py    .html .htm       selectolax (extra `html`): visible text, without scripts and navigation
    pdf.py     .pdf             pypdf (extra `pdf`): text per page
    table.py   .csv .tsv        the standard library;  .parquet: pyarrow (extra `parquet`)
"""

from __future__ import annotations

import importlib
from types import ModuleType

from lfm_colbert.errors import InputError


def require(module: str, extra: str, what: str) -> ModuleType:
    """Import an optional package, or an InputError that names the extra installing it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise InputError(f"reading {what} needs the optional package {module!r}: pip install 'lfm-colbert[{extra}]'") from None
