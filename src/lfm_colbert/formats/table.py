"""Tables as rows: CSV and TSV (the standard library's csv) and Parquet (pyarrow).

Rows come back as (row number, {column: value}); row 1 is the first row after the header. CSV cells are text; a column whose every non-empty cell is a
canonical number ("2020", "-1.5", not "007" or "1e3") holds numbers, so that `year>=2020`
filters compare them as numbers. Parquet keeps its own types; dates and times become ISO text.
"""

from __future__ import annotations

import csv
import datetime as _dt
import decimal
import io
import math
import re
from pathlib import Path
from typing import Any

from lfm_colbert.errors import InputError
from lfm_colbert.formats import require
from lfm_colbert.textfile import read_text

TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t", ".parquet": None}
_NUMBER = re.compile(r"-?(0|[1-9]\d*)(\.\d+)?")


def read_table(path: Path) -> tuple[list[str], list[tuple[int, dict[str, Any]]]]:
    """(column names, rows) of a .csv, .tsv or .parquet file."""
    if path.suffix.lower() == ".parquet":
        return _read_parquet(path)
    return _read_delimited(path, TABLE_SUFFIXES[path.suffix.lower()])


def _read_delimited(path: Path, delimiter: str) -> tuple[list[str], list[tuple[int, dict[str, Any]]]]:
    text = read_text(path)
    try:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        header = next(reader, None)
        if not header:
            return [], []
        columns = [c.strip() for c in header]
        if any(not c for c in columns) or len(set(columns)) != len(columns):
            raise InputError(f"{path}: the header row needs distinct, non-empty column names (got {header})")
        rows = []
        for n, cells in enumerate(reader, 1):
            if not any(c.strip() for c in cells):
                continue  # a blank line
            if len(cells) != len(columns):
                raise InputError(f"{path}, row {n}: {len(cells)} fields where the header has {len(columns)}")
            rows.append((n, dict(zip(columns, cells))))
    except csv.Error as exc:
        raise InputError(f"{path}: not valid {'TSV' if delimiter == chr(9) else 'CSV'} ({exc})") from None
    numeric = {c for c in columns if all(_NUMBER.fullmatch(r[c].strip()) for _, r in rows if r[c].strip())
               and any(r[c].strip() for _, r in rows)}
    for _, row in rows:
        for c in numeric:
            cell = row[c].strip()
            row[c] = (float(cell) if "." in cell else int(cell)) if cell else None
    return columns, rows


def _read_parquet(path: Path) -> tuple[list[str], list[tuple[int, dict[str, Any]]]]:
    pq = require("pyarrow.parquet", "parquet", ".parquet files")
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow's ArrowInvalid and friends
        raise InputError(f"{path}: not a readable Parquet file ({type(exc).__name__}: {exc})") from None
    rows = [(n, {k: _plain(v) for k, v in row.items()}) for n, row in enumerate(table.to_pylist(), 1)]
    return list(table.column_names), rows


def _plain(value: Any) -> Any:
    """A Parquet value as JSON: ISO text for dates and times, numbers for decimals, lists and dicts inside."""
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None  # NaN is how pandas writes a missing number
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, _dt.timedelta):
        return value.total_seconds()
    return value
