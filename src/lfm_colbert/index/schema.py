"""The catalog's SQLite schema: creating it, recognising it (and refusing what is not ours), row
checksums, and upgrading catalogs written by lfm-colbert before versioned rows.

Rows are versioned. Every commit bumps `generation`; a document or segment row records the
generation that added it and the one that removed it (NULL while live), so the state at any
generation a reader still uses can be read back exactly. Removed rows, and the files of removed
segments, are purged once no reader uses a generation that needs them (lfm_colbert.index.pins).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import uuid
from pathlib import Path
from typing import Any, Sequence

from lfm_colbert.errors import IndexFormatError

NAME = "lfm-colbert-catalog"
VERSION = 3  # 1: unversioned rows (lfm-colbert <= 0.1.0 as released); 2 was never used

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE segments (
    id INTEGER PRIMARY KEY,          -- directory segments/<id:06d>, never reused
    n_docs INTEGER NOT NULL,         -- rows written, including ones deleted since
    n_tokens INTEGER NOT NULL,
    files TEXT NOT NULL,             -- JSON {file name: sha256}
    created REAL NOT NULL,
    added INTEGER NOT NULL,          -- generation of the commit that added it
    removed INTEGER,                 -- generation of the commit that retired it, NULL while live
    checksum TEXT NOT NULL           -- of the columns above but `removed`
);
CREATE TABLE docs (
    id TEXT NOT NULL,                -- the user's own id, never renumbered
    parent TEXT,                     -- source document id when this is one passage of it
    segment INTEGER NOT NULL,
    row INTEGER NOT NULL,            -- row inside the segment (a slot is never reused)
    n_tokens INTEGER NOT NULL,
    text TEXT,
    metadata TEXT NOT NULL,
    added INTEGER NOT NULL,
    removed INTEGER,
    checksum TEXT NOT NULL
);
CREATE UNIQUE INDEX docs_slot ON docs(segment, row);
CREATE UNIQUE INDEX docs_live ON docs(id) WHERE removed IS NULL;
CREATE INDEX docs_id ON docs(id);
CREATE INDEX docs_parent ON docs(parent);
CREATE INDEX docs_removed ON docs(removed) WHERE removed IS NOT NULL;
CREATE TABLE pending (              -- segment directories a writer is writing (removed if it died)
    segment INTEGER PRIMARY KEY,
    started REAL NOT NULL
);
"""

DOC_COLUMNS = ("id", "parent", "segment", "row", "n_tokens", "text", "metadata", "added")
SEG_COLUMNS = ("id", "n_docs", "n_tokens", "files", "created", "added")


def row_checksum(values: Sequence[Any]) -> str:
    """A short hash of a row's values (checked on every read: SQLite checks its pages' structure,
    not the bytes of a value)."""
    data = json.dumps(list(values), ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")
    return hashlib.blake2b(data, digest_size=8).hexdigest()


def connect(path: Path) -> sqlite3.Connection:
    """A connection to an existing catalog file (never creates one); explicit transactions."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=rw", uri=True, isolation_level=None,
                           check_same_thread=False, timeout=60.0)
    conn.execute("PRAGMA synchronous=FULL")
    return conn


def create(path: Path, index_id: str, manifest: str) -> None:
    """A new catalog file holding the schema, generation 0 and a copy of the manifest, in one transaction."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("BEGIN IMMEDIATE")
        for statement in SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", [
            ("format", NAME), ("version", str(VERSION)), ("index_id", index_id), ("generation", "0"),
            ("next_segment", "1"), ("manifest", manifest)])
        from lfm_colbert.index import lexical

        lexical.create(conn, 0)  # the keyword index's tables (lfm_colbert.index.lexical)
        conn.execute("COMMIT")
    finally:
        conn.close()


def recognise(conn: sqlite3.Connection, path: Path, index_id: str | None) -> int:
    """The schema version of an open catalog (1 or VERSION); an error naming the file if it is empty,
    unreadable, not ours, or another index's."""
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "meta" not in tables:
            if {"docs", "segments"} <= tables:
                return 1
            raise IndexFormatError(f"corrupted index file {path}: it holds no lfm-colbert catalog (no tables)")
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    except sqlite3.DatabaseError as exc:
        raise IndexFormatError(f"corrupted index file {path}: {exc}") from exc
    if meta.get("format") != NAME or not {"docs", "segments", "pending"} <= tables:
        raise IndexFormatError(f"corrupted index file {path}: not an lfm-colbert catalog")
    if meta.get("version") != str(VERSION):
        raise IndexFormatError(f"{path} has catalog version {meta.get('version')}; this lfm-colbert reads {VERSION}")
    if index_id is not None and meta.get("index_id") != index_id:
        raise IndexFormatError(
            f"corrupted index file {path}: it is the catalog of another index ({meta.get('index_id')}, "
            f"not {index_id}); restore this index's own catalog.sqlite from a backup")
    for key in ("generation", "next_segment"):
        if not str(meta.get(key, "")).isdigit():
            raise IndexFormatError(f"corrupted index file {path}: bad {key} {meta.get(key)!r}")
    return VERSION


def upgrade(conn: sqlite3.Connection, index_id: str, next_segment: int) -> None:
    """Rewrite a version 1 catalog (unversioned rows) as this version, in one transaction.
    The caller holds the writer lock."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("ALTER TABLE docs RENAME TO docs_v1")
        conn.execute("ALTER TABLE segments RENAME TO segments_v1")
        for name in ("docs_slot", "docs_parent"):
            conn.execute(f"DROP INDEX IF EXISTS {name}")
        for statement in SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        segs = conn.execute("SELECT id, n_docs, n_tokens, files, created FROM segments_v1").fetchall()
        conn.executemany(
            "INSERT INTO segments (id, n_docs, n_tokens, files, created, added, checksum) VALUES (?, ?, ?, ?, ?, 0, ?)",
            [(*s, row_checksum((*s, 0))) for s in segs])
        cur = conn.execute("SELECT id, parent, segment, row, n_tokens, text, metadata FROM docs_v1")
        while batch := cur.fetchmany(10_000):
            conn.executemany(
                "INSERT INTO docs (id, parent, segment, row, n_tokens, text, metadata, added, checksum) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?)", [(*d, row_checksum((*d, 0))) for d in batch])
        conn.execute("DROP TABLE docs_v1")
        conn.execute("DROP TABLE segments_v1")
        top = max([next_segment - 1] + [s[0] for s in segs])
        conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", [
            ("format", NAME), ("version", str(VERSION)), ("index_id", index_id), ("generation", "0"),
            ("next_segment", str(top + 1))])
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def new_index_id() -> str:
    return uuid.uuid4().hex
