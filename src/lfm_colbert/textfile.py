"""Reading the text files people hand us: UTF-8 with or without a byte-order mark, or UTF-16 with one.

Windows editors save UTF-8 with a BOM (which `json.loads` rejects on line 1) or, as "Unicode",
UTF-16 with a BOM; both are read as the text they hold.
"""

from __future__ import annotations

import codecs
from pathlib import Path

from lfm_colbert.errors import InputError

# Python's utf-8-sig and utf-16 decoders drop the mark; anything without one is read as UTF-8.
_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


def read_text(path: str | Path) -> str:
    """The text of `path`; an InputError naming the file if it cannot be read or is not text in those encodings."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    encoding = next((enc for bom, enc in _BOMS if raw.startswith(bom)), "utf-8")
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        name = "UTF-16" if encoding == "utf-16" else "UTF-8"
        raise InputError(f"{path}: not {name} text ({exc.reason} at byte {exc.start})") from None
