"""Keep an index in step with files and folders: what `lfm-colbert index SOURCES` does, in Python.

    >>> from lfm_colbert.sync import read_sources, update_index
    >>> report = update_index(Index("my-index"), read_sources(["notes/", "faq.jsonl"]), sync=True)
    >>> report.encoded, report.unchanged, report.removed

Only what changed costs anything. A document stored with the same text, metadata and passages
is skipped; a passage whose text is stored already (same id, or the same file under the id an
earlier version gave it) is written from its stored vectors, not encoded again, so a metadata
change or a moved table row costs a copy; everything else is encoded, `batch_size` passages at a
time, sorted by length as PyLate batches them, and committed every `commit_every` passages (whole
documents), so an interrupted run resumes where it stopped.

A source's documents are those whose `source` metadata names a file of it (see
`lfm_colbert.ingest`). Those no longer in the source (a deleted file, a removed .jsonl line) are
reported, and deleted with `sync=True`, after everything new is written. A file skipped because
it could not be read keeps its documents.

Indexes built before ids became path-independent named a file by its path as typed
(`examples/corpus/a.md`, `/home/me/corpus/a.md`). Such documents for the files being indexed are
found (by their `source` as this run would have typed it, or its absolute path), reported as
`legacy`, their vectors reused for the new ids, and deleted with `sync=True`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from lfm_colbert.errors import InputError
from lfm_colbert.ingest import Document, Passage, Source, TableColumns, passage_budget, read_documents, resolve_sources, split_passages
from lfm_colbert.pooling import pool_tokens, recorded_pool_factor

_PAGE = 1000  # documents per catalog read


@dataclass
class SourceSet:
    """Documents read from sources, with the sources and the files skipped as unreadable."""

    sources: list[Source]
    documents: list[Document]
    skipped: set[str] = field(default_factory=set)


@dataclass
class SyncReport:
    """What an update did (filled in as it goes: an interrupted run's report says what was saved)."""

    documents: int = 0  # documents read from the sources
    passages: int = 0  # their passages
    to_write: int = 0  # passages new or changed
    encoded: int = 0  # passages encoded (and saved)
    reused: int = 0  # passages written from stored vectors (and saved)
    changed_documents: int = 0  # documents written
    unchanged: int = 0  # documents skipped: stored as they are
    vanished: list[str] = field(default_factory=list)  # stored documents of these sources no longer in them
    legacy: list[str] = field(default_factory=list)  # the same files under ids an earlier version gave them
    removed: int = 0  # documents deleted (sync)

    @property
    def saved(self) -> int:
        return self.encoded + self.reused


def read_sources(sources: Sequence[str | Path], columns: TableColumns | None = None) -> SourceSet:
    """Read every document of `sources` (files and folders; see `lfm_colbert.ingest.read_documents`)."""
    resolved = resolve_sources(sources)
    skipped: set[str] = set()
    docs = list(read_documents([s.path for s in resolved], columns=columns, skipped=skipped))
    return SourceSet(resolved, docs, skipped)


def update_index(
    index: Any,
    sources: SourceSet,
    *,
    sync: bool = False,
    force: bool = False,
    max_tokens: int | None = None,
    overlap: int = 64,
    batch_size: int = 32,
    commit_every: int = 512,
    pool_factor: int | None = None,
    progress: bool | None = None,
    report: SyncReport | None = None,
    feed: Callable[[list[Passage]], Any] | None = None,
) -> SyncReport:
    """Bring `index` in step with `sources`; see the module docstring. `force` encodes every passage
    again; `pool_factor` pools a new index's document vectors (fixed when it is created);
    `progress`: None shows a bar on a terminal only. `feed`, given the passages to encode (in commit
    order), returns what encodes them elsewhere: an object whose `take(ids)` gives their vectors and
    `stop()` ends the job (`lfm_colbert.scale.ray.RayFeed`, for `--ray`)."""
    from tqdm.auto import tqdm

    for name, value in (("commit_every", commit_every), ("batch_size", batch_size), ("max_tokens", max_tokens)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise InputError(f"{name} (--{name.replace('_', '-')}) must be a positive integer, not {value}")
    report = report if report is not None else SyncReport()
    pool_factor, record = _pool_factor(index, pool_factor)
    model = index.model
    budget = passage_budget(model)
    if max_tokens is not None and max_tokens > budget:
        # Longer passages would be cut at document_length when encoded: their ends silently unsearchable.
        raise InputError(f"max_tokens (--max-tokens) {max_tokens} is more than a document of this model holds ({budget} tokens)")
    budget = max_tokens or budget
    docs = sources.documents
    passages = list(split_passages(docs, budget, min(overlap, budget // 2), tokenizer=model.tokenizer))
    report.documents, report.passages = len(docs), len(passages)

    same = set() if force else index.unchanged(
        [p.id for p in passages], [p.text for p in passages], [p.metadata for p in passages], [p.parent for p in passages]
    )
    todo = [p for p in passages if p.id not in same]
    report.to_write = len(todo)
    report.changed_documents = len({p.parent for p in todo})
    report.unchanged = len(docs) - report.changed_documents
    legacy = _legacy_documents(index, sources, {d.id for d in docs})
    report.legacy = sorted({d.parent or d.id for d in legacy})
    reuse = {} if force else _reusable(index, todo, legacy)

    bar = tqdm(total=len(todo) - len(reuse), desc="encoding", unit="passage",
               disable=None if progress is None else not progress)
    fresh = [p for p in todo if p.id not in reuse]
    feeder = feed(fresh) if feed is not None and fresh else None
    try:
        with index.bulk():  # a new compressed index fits its codec to the whole run, at its end
            for chunk in commit_runs(todo, commit_every):  # each one atomic; unchanged-skipping resumes
                vectors = _vectors(index, model, chunk, reuse, batch_size, pool_factor, bar, feeder)
                if record:  # a new index's pool factor, recorded just before its first write
                    index.set_pool_factor(pool_factor)
                    record = False
                index.add_vectors(
                    [vectors[p.id] for p in chunk], ids=[p.id for p in chunk], texts=[p.text for p in chunk],
                    metadata=[p.metadata for p in chunk], parents=[p.parent for p in chunk], upsert=True,
                )
                n_reused = sum(p.id in reuse for p in chunk)
                report.reused += n_reused
                report.encoded += len(chunk) - n_reused
    finally:
        bar.close()
        if feeder is not None:
            feeder.stop()

    report.vanished = _vanished(index, sources, {d.id for d in docs}, set(report.legacy))
    if sync and (report.vanished or report.legacy):
        index.delete(report.vanished + report.legacy, missing_ok=True)
        report.removed = len(report.vanished) + len(report.legacy)
    return report


def _pool_factor(index: Any, given: int | None) -> tuple[int | None, bool]:
    """The pool factor to use, and whether it still has to be recorded: it is fixed when the index
    gets its first documents (recorded then, so a run that fails before writing leaves none behind)."""
    have = recorded_pool_factor(index)
    if given is not None and (isinstance(given, bool) or not isinstance(given, int) or given < 1):
        raise InputError(f"the pool factor must be a positive integer, not {given!r}")
    if given == 1:
        given = None
    if given is None or given == have:
        return have, False
    if have is None and len(index) == 0:
        if not hasattr(index, "set_pool_factor"):  # a Qdrant store: its points carry no pooling record
            raise InputError("token pooling (--pool-factor) applies to an embedded index")
        return given, True
    now = f"pooled with factor {have}" if have else "not pooled"
    raise InputError(f"{index.path} holds documents {now}; the pool factor is chosen when an index is created")


def commit_runs(passages: Sequence[Passage], size: int) -> Iterator[list[Passage]]:
    """Runs of about `size` passages, never splitting one document's passages (they replace together):
    the commits of `lfm-colbert index --commit-every` (and the Ray job's, lfm_colbert.scale.ray)."""
    chunk: list[Passage] = []
    for p in passages:
        if len(chunk) >= size and p.parent != chunk[-1].parent:
            yield chunk
            chunk = []
        chunk.append(p)
    if chunk:
        yield chunk


def _vectors(index: Any, model: Any, chunk: list[Passage], reuse: dict[str, str], batch_size: int,
             pool_factor: int | None, bar: Any, feeder: Any = None) -> dict[str, np.ndarray]:
    """{passage id: vectors} for one commit: stored ones copied, the rest encoded (here, or by the
    feeder) and pooled."""
    out: dict[str, np.ndarray] = {}
    copied = [p for p in chunk if p.id in reuse]
    if copied:
        out.update(zip((p.id for p in copied), index.vectors([reuse[p.id] for p in copied])))
    if feeder is not None:
        fresh = [p for p in chunk if p.id not in reuse]
        for p, v in zip(fresh, feeder.take([p.id for p in fresh])):
            out[p.id] = pool_tokens(v, pool_factor) if pool_factor else v
        bar.update(len(fresh))
        return out
    # Longest first, batch by batch, as one encode() call would batch them (so the vectors are the
    # same), with the bar moving after each batch rather than after the whole commit.
    fresh = sorted((p for p in chunk if p.id not in reuse), key=lambda p: -len(p.text))
    for start in range(0, len(fresh), batch_size):
        batch = fresh[start : start + batch_size]
        encoded = model.encode([p.text for p in batch], is_query=False, batch_size=batch_size, show_progress_bar=False)
        for p, v in zip(batch, encoded):
            out[p.id] = pool_tokens(v, pool_factor) if pool_factor else v
        bar.update(len(batch))
    return out


def _stored(index: Any, ids: list[str]) -> Iterator[Any]:
    for i in range(0, len(ids), _PAGE):
        yield from index.get(ids[i : i + _PAGE])


def _reusable(index: Any, todo: list[Passage], legacy: list[Any]) -> dict[str, str]:
    """{passage id: stored id whose vectors it can take}: the same text under the same id, or a legacy
    document's passage of the same text (the vectors depend on the text alone)."""
    by_text = {d.text: d.id for d in legacy if d.text}
    reuse = {}
    for p, d in zip(todo, _stored(index, [p.id for p in todo])):
        if d is not None and d.text == p.text:
            reuse[p.id] = p.id
        elif p.text in by_text:
            reuse[p.id] = by_text[p.text]
    return reuse


def _scan(index: Any, sources: list[Source]) -> Iterator[Any]:
    """The stored documents of any of `sources`. A store whose filters cannot range over text (Qdrant's
    payload index orders numbers only) is read once, whole, and each source's scope tested here."""
    if getattr(index, "text_ranges", True):
        scopes = [src.scope_filter() for src in sources]
    else:
        scopes = [None] if sources else []
    for scope in scopes:
        after = None
        while page := index.list(filter=scope, limit=_PAGE, after=after):
            yield from (d for d in page if scope is not None or any(s.covers(d.metadata.get("source")) for s in sources))
            after = page[-1].id


def _vanished(index: Any, sources: SourceSet, current: set[str], legacy: set[str]) -> list[str]:
    """Ids of stored documents that came from these sources and are no longer in them."""
    gone = set()
    for d in _scan(index, sources.sources):
        doc_id = d.parent or d.id
        if doc_id not in current and doc_id not in legacy and d.metadata.get("source") not in sources.skipped:
            gone.add(doc_id)
    return sorted(gone)


def _legacy_documents(index: Any, sources: SourceSet, current: set[str]) -> list[Any]:
    """Stored passages of these sources under the ids an earlier version gave them: the source's path
    as typed now, or absolute, in place of its name (`examples/corpus/a.md` for `corpus/a.md`)."""
    old = [Source(Path(base), base, src.is_dir) for src in sources.sources
           for base in {src.path.as_posix(), src.path.absolute().as_posix(), src.path.resolve().as_posix()} - {src.name}]
    found: dict[str, Any] = {}
    for d in _scan(index, old):
        if (d.parent or d.id) not in current:
            found[d.id] = d
    return list(found.values())
