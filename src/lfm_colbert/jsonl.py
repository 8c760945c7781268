"""JSON Lines reading shared by document ingestion and dataset loading."""

from __future__ import annotations

import json
from typing import Iterable, Iterator


def iter_objects(lines: Iterable[str], where: str, error: type[Exception]) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line; `error` names `where` and the line on bad input."""
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise error(f"{where}, line {n}: not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise error(f"{where}, line {n}: each line must be a JSON object")
        yield n, row
