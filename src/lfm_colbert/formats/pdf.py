"""PDF files as text, page by page (pypdf: pure Python, no system libraries)."""

from __future__ import annotations

import logging
from pathlib import Path

from lfm_colbert.errors import InputError
from lfm_colbert.formats import require


def read_pdf_pages(path: Path) -> list[str]:
    """The text of each page, in order ("" for a page with no extractable text, such as a scan)."""
    pypdf = require("pypdf", "pdf", ".pdf files")
    logging.getLogger("pypdf").setLevel(logging.ERROR)  # its warnings about odd but readable files are noise here
    try:
        reader = pypdf.PdfReader(str(path))
        if reader.is_encrypted and reader.decrypt("") == 0:
            raise InputError(f"{path}: the PDF is encrypted with a password")
        return [page.extract_text() or "" for page in reader.pages]
    except InputError:
        raise
    except Exception as exc:  # pypdf raises many kinds on damaged files
        raise InputError(f"{path}: not a readable PDF ({type(exc).__name__}: {exc})") from None
