"""Reading queries and documents given on the command line: files, or standard input as `-`.

Query files: one query per line, `ID<TAB>text` to give it an id (else its line number is its
id); a line whose first non-blank character is # is a comment (a query that starts with # needs
an id: `q7<TAB>#hashtag`); blank lines are skipped. A .jsonl file (or standard input whose first
line is a JSON object) holds {"id" or "_id", "text" or "query"} per line, as BEIR's queries.jsonl.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

from lfm_colbert.errors import InputError
from lfm_colbert.jsonl import iter_objects
from lfm_colbert.textfile import read_text


@dataclass
class Item:
    """A query or a document to rerank: its id and its text."""

    id: str
    text: str


def read_input(path: str) -> tuple[str, str]:
    """(content, name) of a file, or of standard input for '-'."""
    if path == "-":
        if sys.stdin is None or sys.stdin.isatty():
            raise InputError("'-' reads standard input, but nothing is piped in")
        return sys.stdin.read(), "standard input"
    return read_text(path), path


def _is_jsonl(content: str, name: str) -> bool:
    if name.lower().endswith(".jsonl"):
        return True
    first = next((line.strip() for line in content.splitlines() if line.strip()), "")
    if not first.startswith("{"):
        return False
    try:
        return isinstance(json.loads(first), dict)
    except json.JSONDecodeError:
        return False


def _jsonl_items(content: str, name: str, fields: tuple[str, ...]) -> list[Item]:
    items = []
    for n, row in iter_objects(content.splitlines(), name, InputError):
        text = next((row[f] for f in fields if f in row), None)
        if not isinstance(text, str) or not text.strip():
            raise InputError(f"{name}, line {n}: needs a non-empty string field {' or '.join(repr(f) for f in fields)}")
        if isinstance(row.get("title"), str) and row["title"].strip() and "text" in row:
            text = f"{row['title'].strip()}\n\n{text}"
        item_id = row.get("id", row.get("_id", n))
        items.append(Item(str(item_id), text))
    return items


def read_queries(path: str) -> list[Item]:
    """Queries of a query file (or '-'), with their ids; see the module docstring for the format."""
    content, name = read_input(path)
    if _is_jsonl(content, name):
        return _jsonl_items(content, name, ("text", "query"))
    out = []
    for n, line in enumerate(content.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        qid, tab, text = line.partition("\t")
        if tab and qid.strip() and text.strip():
            out.append(Item(qid.strip(), text.strip()))
        else:
            out.append(Item(str(n), line.strip()))
    return out


def read_documents_to_rerank(path: str) -> list[Item]:
    """Documents for `rerank`: a .jsonl file (or JSON Lines on '-') of {"id", "text"}, else one per
    non-blank line (its id is its line number)."""
    content, name = read_input(path)
    if _is_jsonl(content, name):
        return _jsonl_items(content, name, ("text",))
    return [Item(str(n), line.strip()) for n, line in enumerate(content.splitlines(), 1) if line.strip()]


def check_unique(items: list[Item], what: str) -> None:
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise InputError(f"{what} id {item.id!r} is given twice; ids must be unique (they name the rows of the results)")
        seen.add(item.id)


def shorten(text: str, width: int = 200) -> str:
    """One line of at most `width` characters, saying how long the whole was when it is cut."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else f"{flat[: width - 1]}… ({len(text):,} characters)"
