"""Document preparation: read files and folders into documents, split long texts into passages.

    >>> docs = list(read_documents(["notes/", "faq.jsonl"]))
    >>> passages = split_passages(docs, max_tokens=500, overlap=64, tokenizer=model.tokenizer.tokenizer)

Formats: .txt / .md / .markdown (one document per file), .jsonl (one per line), .html / .htm (the
visible text), .pdf (one document per file, passages never crossing a page), .csv / .tsv /
.parquet (one per row; see `TableColumns`). HTML, PDF and Parquet need optional packages.

Ids do not depend on how a path was spelled, only on the source given and the path inside it:
a file inside a folder given as a source is `FOLDER/relative/path`, where FOLDER is the folder's
own name (`corpus`, `./corpus` and `/abs/corpus` all give `corpus/guides/a.md`); a file given
directly is its file name. That is also the `source` metadata of its documents. A .jsonl line or
table row takes its "id" (or "_id", or the chosen id column), else `SOURCE:HASH`, a hash of its
text, so that inserting a line changes no other document's id (lines carry no line number in
their metadata for the same reason; table rows carry `row`).

A document longer than `max_tokens` becomes passages "ID#0", "ID#1", ... that overlap by `overlap`
tokens; every passage keeps `parent` = the document id and metadata `source`, `passage`,
`start`, `end` (character offsets into the document's text), and `page` for a PDF.
"""

from __future__ import annotations

import hashlib
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
HTML_SUFFIXES = {".html", ".htm"}
PDF_SUFFIXES = {".pdf"}
TABLE_SUFFIXES = {".csv", ".tsv", ".parquet"}
SUFFIXES = TEXT_SUFFIXES | JSONL_SUFFIXES | HTML_SUFFIXES | PDF_SUFFIXES | TABLE_SUFFIXES
# Fallback tokens when no tokenizer is given: a CJK / kana / hangul character, a word, or a symbol.
_ROUGH_TOKEN = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]|\w+|[^\w\s]")


@dataclass
class Document:
    """A document read from a source. `sections` (start, end, metadata) bound its passages: a PDF's
    pages, each passage inside one and carrying its metadata. `origin` says where it was read."""

    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    sections: list[tuple[int, int, dict[str, Any]]] | None = None
    origin: str = field(default="", repr=False, compare=False)


@dataclass
class Passage:
    id: str
    parent: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class TableColumns:
    """Which columns of a .csv / .tsv / .parquet file make a document. `text`: columns joined with a
    blank line (default: "text"); `id`: default "id" or "_id" when present, else a hash of the text;
    `metadata`: default every other column ([] for none)."""

    id: str | None = None
    text: list[str] | None = None
    metadata: list[str] | None = None


@dataclass
class Source:
    """One source given: a file or a folder, and the name its documents' ids and `source` start with."""

    path: Path
    name: str
    is_dir: bool

    def scope_filter(self) -> dict[str, Any]:
        """A metadata filter for the documents read from this source ('/' + 1 is '0': a prefix range)."""
        if self.is_dir:
            return {"source": {"$gte": self.name + "/", "$lt": self.name + "0"}}
        return {"source": self.name}

    def covers(self, source: Any) -> bool:
        """Whether a document's `source` metadata names a file of this source (as scope_filter selects)."""
        if not isinstance(source, str):
            return False
        return source.startswith(self.name + "/") if self.is_dir else source == self.name


def resolve_sources(sources: Sequence[str | Path]) -> list[Source]:
    """The sources given, checked: each exists, and none lies inside another (its files would be read twice)."""
    if isinstance(sources, (str, Path)):
        sources = [sources]
    if not sources:
        raise InputError("no sources given")
    out = []
    for src in sources:
        path = Path(src)
        if not path.exists():
            raise InputError(f"{path}: no such file or folder")
        real = path.resolve()
        out.append(Source(path, real.name or "root", path.is_dir()))
    real = [s.path.resolve() for s in out]
    for i, a in enumerate(real):
        for j, b in enumerate(real):
            if i != j and (a == b or (out[j].is_dir and b in a.parents)):
                raise InputError(f"{out[i].path} is {'the same as' if a == b else 'inside'} {out[j].path}: give it once")
    return out


def read_documents(
    sources: Sequence[str | Path], *, columns: TableColumns | None = None, skipped: set[str] | None = None
) -> Iterator[Document]:
    """Documents from files and folders (searched recursively for the formats above, hidden paths skipped).

    Text is UTF-8 (a byte-order mark is allowed) or UTF-16 with a byte-order mark. A file named
    in `sources` that cannot be read is an error; one found in a folder is skipped with a warning
    (folders collect stray files) and its `source` added to `skipped`, so that a sync keeps what
    was indexed from it. A malformed .jsonl line is an error either way: it is meant as data. So
    is an id given twice: the error names both places, where the index would only see the second.
    """
    seen: dict[str, str] = {}
    for doc in _documents(resolve_sources(sources), columns or TableColumns(), skipped):
        if doc.id in seen:
            raise InputError(f"id {doc.id!r} is given twice: {seen[doc.id]} and {doc.origin}")
        seen[doc.id] = doc.origin
        yield doc


def _documents(sources: list[Source], columns: TableColumns, skipped: set[str] | None) -> Iterator[Document]:
    for src in sources:
        if not src.is_dir:
            if src.path.suffix.lower() not in SUFFIXES:
                raise InputError(f"{src.path}: unsupported file type {src.path.suffix!r} (use {', '.join(sorted(SUFFIXES))})")
            yield from _parse_file(src.path, src.name, columns)
            continue
        files = sorted(
            p for p in src.path.rglob("*")
            if p.is_file() and p.suffix.lower() in SUFFIXES
            and not any(part.startswith(".") for part in p.relative_to(src.path).parts)
        )
        if not files:
            warnings.warn(f"{src.path} holds no files of the kinds indexed ({', '.join(sorted(SUFFIXES))})", stacklevel=3)
        for f in files:
            name = f"{src.name}/{f.relative_to(src.path).as_posix()}"
            try:
                docs = list(_parse_file(f, name, columns, in_folder=True))
            except InputError as exc:
                if isinstance(exc, _DataError):
                    raise
                warnings.warn(f"{exc}; skipped", stacklevel=3)
                if skipped is not None:
                    skipped.add(name)
                continue
            yield from docs


class _DataError(InputError):
    """A malformed .jsonl line: data, so an error even in a folder, where unreadable files are skipped."""


def _parse_file(path: Path, source: str, columns: TableColumns, in_folder: bool = False) -> Iterator[Document]:
    suffix = path.suffix.lower()
    if suffix in JSONL_SUFFIXES:
        yield from _read_jsonl(read_text(path), source)
    elif suffix in TABLE_SUFFIXES:
        yield from _read_table(path, source, columns)
    elif suffix in PDF_SUFFIXES:
        yield from _read_pdf(path, source)
    else:
        if suffix in HTML_SUFFIXES:
            from lfm_colbert.formats.html import read_html_file

            title, content = read_html_file(path)
            meta = {"source": source, "title": title} if title else {"source": source}
            if title and content.split("\n", 1)[0] != title:  # the title carries signal, unless it is the first line already
                content = f"{title}\n\n{content}"
        else:
            content, meta = read_text(path), {"source": source}
        if not content.strip():
            warnings.warn(f"{path} is empty; skipped", stacklevel=4)
            return
        yield Document(source, content, meta, origin=str(path))


def _text_id(source: str, text: str, taken: dict[str, int]) -> str:
    """`SOURCE:HASH` for a record without an id; a repeated text gets `~2`, `~3`, ... in order."""
    base = f"{source}:{hashlib.sha256(text.encode('utf-8', 'surrogatepass')).hexdigest()[:12]}"
    taken[base] = taken.get(base, 0) + 1
    return base if taken[base] == 1 else f"{base}~{taken[base]}"


def _record_id(value: Any, where: str) -> str:
    if not isinstance(value, (str, int)) or isinstance(value, bool) or str(value) == "":
        raise _DataError(f"{where}: 'id' must be a non-empty string or integer")
    return str(value)


def _read_jsonl(content: str, source: str) -> Iterator[Document]:
    """One document per line: {"id"|"_id", "text", optional "title", optional "metadata": {...}, other fields}."""
    taken: dict[str, int] = {}
    for n, rec in iter_objects(content.splitlines(), source, _DataError):
        where = f"{source}, line {n}"
        text = rec.get("text")
        if not isinstance(text, str):
            raise _DataError(f"{where}: needs a string field 'text'")
        meta = rec.get("metadata") or {}
        if not isinstance(meta, dict):
            raise _DataError(f"{where}: 'metadata' must be an object")
        extra = {k: v for k, v in rec.items() if k not in {"id", "_id", "text", "metadata"}}
        title = rec.get("title")
        if isinstance(title, str) and title.strip():
            text = f"{title.strip()}\n\n{text}"  # titles carry signal (BEIR convention)
        if not text.strip():
            warnings.warn(f"{where} has an empty text; skipped", stacklevel=4)
            continue
        has_id = "id" in rec or "_id" in rec
        doc_id = _record_id(rec.get("id", rec.get("_id")), where) if has_id else _text_id(source, text, taken)
        yield Document(doc_id, text, {**extra, **meta, "source": source}, origin=where)


def _read_table(path: Path, source: str, columns: TableColumns) -> Iterator[Document]:
    from lfm_colbert.formats.table import read_table

    names, rows = read_table(path)
    if not names:
        warnings.warn(f"{path} is empty; skipped", stacklevel=4)
        return
    text_cols = columns.text or ["text"]
    id_col = columns.id or next((c for c in ("id", "_id") if c in names), None)
    missing = [c for c in [*text_cols, *([columns.id] if columns.id else []), *(columns.metadata or [])] if c not in names]
    if missing:
        raise InputError(f"{path}: no column {missing[0]!r} (columns: {', '.join(names)}); choose with "
                         "--text-column, --id-column and --metadata-columns")
    meta_cols = columns.metadata if columns.metadata is not None else [c for c in names if c not in {*text_cols, id_col}]
    taken: dict[str, int] = {}
    for n, row in rows:
        where = f"{source}, row {n}"
        parts = [str(row[c]).strip() for c in text_cols if row[c] is not None and str(row[c]).strip()]
        text = "\n\n".join(parts)
        if not text:
            warnings.warn(f"{where} has an empty text; skipped", stacklevel=4)
            continue
        doc_id = _record_id(row[id_col], where) if id_col and row[id_col] not in (None, "") else _text_id(source, text, taken)
        meta = {c: row[c] for c in meta_cols if row[c] not in (None, "")}
        yield Document(doc_id, text, {**meta, "source": source, "row": n}, origin=where)


def _read_pdf(path: Path, source: str) -> Iterator[Document]:
    from lfm_colbert.formats.pdf import read_pdf_pages

    text, sections = "", []
    for page, content in enumerate(read_pdf_pages(path), 1):
        content = content.strip()
        if not content:
            continue  # a scanned or blank page
        start = len(text) + (2 if text else 0)
        text = f"{text}\n\n{content}" if text else content
        sections.append((start, len(text), {"page": page}))
    if not text:
        warnings.warn(f"{path} has no extractable text (a scan? run OCR on it first); skipped", stacklevel=4)
        return
    yield Document(source, text, {"source": source}, sections, origin=str(path))


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
    `overlap` defaults to min(64, max_tokens // 4). A document with sections (PDF pages) is cut
    inside each section: no passage spans two.
    """
    if max_tokens < 1:
        raise InputError(f"max_tokens must be positive, not {max_tokens}")
    if overlap is None:
        overlap = min(64, max_tokens // 4)
    if not 0 <= overlap < max_tokens:
        raise InputError(f"overlap must be at least 0 and less than max_tokens ({max_tokens}), not {overlap}")
    for doc in documents:
        sections = doc.sections or [(0, len(doc.text), {})]
        windows = []  # (start, end, section metadata)
        for lo, hi, extra in sections:
            spans = [(a + lo, b + lo) for a, b in _token_spans(doc.text[lo:hi], tokenizer)]
            if len(spans) <= max_tokens:
                windows.append((lo, hi, extra))
                continue
            for first in range(0, len(spans), max_tokens - overlap):
                last = min(first + max_tokens, len(spans)) - 1
                windows.append((spans[first][0], spans[last][1], extra))
                if last == len(spans) - 1:
                    break
        if len(windows) == 1 and windows[0][:2] == (0, len(doc.text)):
            yield Passage(doc.id, doc.id, doc.text, {**doc.metadata, **windows[0][2], "passage": 0, "start": 0, "end": len(doc.text)})
            continue
        for i, (start, end, extra) in enumerate(windows):
            meta = {**doc.metadata, **extra, "passage": i, "start": start, "end": end}
            yield Passage(f"{doc.id}#{i}", doc.id, doc.text[start:end], meta)


def passage_budget(model: Any) -> int:
    """Text tokens that fit in one document for `model` (document_length minus BOS and prefix)."""
    overhead = model.tokenizer.count_tokens("")
    return max(1, int(model.settings.document_length) - overhead)
