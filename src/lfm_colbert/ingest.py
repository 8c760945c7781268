"""Document preparation: read .txt / .md / .jsonl files and folders, split long texts into passages.

    >>> docs = list(read_documents(["notes/", "faq.jsonl"]))
    >>> passages = split_passages(docs, max_tokens=500, overlap=64, tokenizer=model.tokenizer.tokenizer)

Ids: a .txt / .md file's id is its path as given (a folder's files: folder/relative/path); a
.jsonl line's id is its "id" (or "_id") field, else "file:line". A document longer than
`max_tokens` becomes passages "ID#0", "ID#1", ... that overlap by `overlap` tokens; every passage
keeps `parent` = the document id and metadata `source`, `passage`, `start`, `end` (character
offsets into the document's text), so a hit can be traced back to the exact span.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from lfm_colbert.errors import InputError
from lfm_colbert.jsonl import iter_objects
from lfm_colbert.textfile import read_text

TEXT_SUFFIXES = {".txt", ".md", ".markdown"}
JSONL_SUFFIXES = {".jsonl"}
# Fallback tokens when no tokenizer is given: a CJK / kana / hangul character, a word, or a symbol.
_ROUGH_TOKEN = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]|\w+|[^\w\s]")


@dataclass
class Document:
    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class Passage:
    id: str
    parent: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)


def read_documents(sources: Sequence[str | Path]) -> Iterator[Document]:
    """Documents from files and folders (searched recursively for .txt, .md, .markdown, .jsonl).

    Text is UTF-8 (a byte-order mark is allowed) or UTF-16 with a byte-order mark. A file named
    in `sources` that is not is an error; one found in a folder is skipped with a warning (folders
    collect stray files). A malformed .jsonl line is an error either way: it is meant as data. So is
    an id given twice: the error names both places, where the index would only see the second.
    """
    seen: dict[str, str] = {}
    for doc in _documents(sources):
        line = doc.metadata.get("line")
        where = f"{doc.metadata['source']}, line {line}" if line else doc.metadata["source"]
        if doc.id in seen:
            raise InputError(f"id {doc.id!r} is given twice: {seen[doc.id]} and {where}")
        seen[doc.id] = where
        yield doc


def _documents(sources: Sequence[str | Path]) -> Iterator[Document]:
    if isinstance(sources, (str, Path)):
        sources = [sources]
    if not sources:
        raise InputError("no sources given")
    for src in sources:
        path = Path(src)
        if path.is_dir():
            files = sorted(
                p for p in path.rglob("*")
                if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES | JSONL_SUFFIXES
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
            if not files:
                warnings.warn(f"{path} holds no .txt, .md or .jsonl files", stacklevel=2)
            for f in files:
                try:
                    content = read_text(f)
                except InputError as exc:
                    warnings.warn(f"{exc}; skipped", stacklevel=2)
                    continue
                yield from _parse_file(f, content)
        elif path.is_file():
            if path.suffix.lower() not in TEXT_SUFFIXES | JSONL_SUFFIXES:
                raise InputError(f"{path}: unsupported file type {path.suffix!r} (use .txt, .md or .jsonl)")
            yield from _parse_file(path, read_text(path))
        else:
            raise InputError(f"{path}: no such file or folder")


def _parse_file(path: Path, content: str) -> Iterator[Document]:
    source = path.as_posix()
    if path.suffix.lower() in JSONL_SUFFIXES:
        yield from _read_jsonl(content, source)
        return
    if not content.strip():
        warnings.warn(f"{source} is empty; skipped", stacklevel=3)
        return
    yield Document(source, content, {"source": source})


def _read_jsonl(content: str, source: str) -> Iterator[Document]:
    """One document per line: {"id"|"_id", "text", optional "title", optional "metadata": {...}, other fields}."""
    for n, rec in iter_objects(content.splitlines(), source, InputError):
        text = rec.get("text")
        if not isinstance(text, str):
            raise InputError(f"{source}, line {n}: needs a string field 'text'")
        doc_id = rec.get("id", rec.get("_id", f"{source}:{n}"))
        if not isinstance(doc_id, (str, int)) or isinstance(doc_id, bool) or str(doc_id) == "":
            raise InputError(f"{source}, line {n}: 'id' must be a non-empty string or integer")
        meta = rec.get("metadata") or {}
        if not isinstance(meta, dict):
            raise InputError(f"{source}, line {n}: 'metadata' must be an object")
        extra = {k: v for k, v in rec.items() if k not in {"id", "_id", "text", "metadata"}}
        title = rec.get("title")
        if isinstance(title, str) and title.strip():
            text = f"{title.strip()}\n\n{text}"  # titles carry signal (BEIR convention)
        if not text.strip():
            warnings.warn(f"{source}, line {n} has an empty text; skipped", stacklevel=3)
            continue
        yield Document(str(doc_id), text, {**extra, **meta, "source": source, "line": n})


def _token_spans(text: str, tokenizer: Any) -> list[tuple[int, int]]:
    """(start, end) character offsets of each token of `text`."""
    if tokenizer is None:
        return [m.span() for m in _ROUGH_TOKEN.finditer(text)]
    hf = getattr(tokenizer, "tokenizer", tokenizer)  # a ColBERTTokenizer wraps the HF one
    return [tuple(o) for o in hf.encode(text, add_special_tokens=False).offsets]


def split_passages(
    documents: Iterable[Document], max_tokens: int = 500, overlap: int | None = None, tokenizer: Any = None
) -> Iterator[Passage]:
    """Cut each document into windows of at most `max_tokens` tokens overlapping by `overlap`.

    `tokenizer` is the model's (a `tokenizers.Tokenizer` or the ColBERT tokenizer); without one,
    words and CJK characters are counted instead, which only approximates the model's tokens.
    `overlap` defaults to min(64, max_tokens // 4).
    """
    if max_tokens < 1:
        raise InputError(f"max_tokens must be positive, not {max_tokens}")
    if overlap is None:
        overlap = min(64, max_tokens // 4)
    if not 0 <= overlap < max_tokens:
        raise InputError(f"overlap must be at least 0 and less than max_tokens ({max_tokens}), not {overlap}")
    for doc in documents:
        spans = _token_spans(doc.text, tokenizer)
        if len(spans) <= max_tokens:
            meta = {**doc.metadata, "passage": 0, "start": 0, "end": len(doc.text)}
            yield Passage(doc.id, doc.id, doc.text, meta)
            continue
        step = max_tokens - overlap
        for i, first in enumerate(range(0, len(spans), step)):
            last = min(first + max_tokens, len(spans)) - 1
            start, end = spans[first][0], spans[last][1]
            meta = {**doc.metadata, "passage": i, "start": start, "end": end}
            yield Passage(f"{doc.id}#{i}", doc.id, doc.text[start:end], meta)
            if last == len(spans) - 1:
                break


def passage_budget(model: Any) -> int:
    """Text tokens that fit in one document for `model` (document_length minus BOS and prefix)."""
    overhead = model.tokenizer.count_tokens("")
    return max(1, int(model.settings.document_length) - overhead)
