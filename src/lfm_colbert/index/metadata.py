"""The catalog: document ids, texts, metadata and segment records in one SQLite file.

SQLite is the commit point of every write: a segment's files exist on disk before its row is
inserted here, and ids point at (segment, row) pairs only once the transaction commits.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from lfm_colbert.errors import IndexFormatError, InputError
# The filter language lives in its own module; re-exported here for the catalog's callers.
from lfm_colbert.index.filters import filter_sql  # noqa: F401

SCHEMA = """
CREATE TABLE IF NOT EXISTS segments (
    id INTEGER PRIMARY KEY,          -- directory segments/<id:06d>
    n_docs INTEGER NOT NULL,         -- rows written, including ones deleted since
    n_tokens INTEGER NOT NULL,
    files TEXT NOT NULL,             -- JSON {file name: sha256}
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS docs (
    id TEXT PRIMARY KEY,             -- the user's own id; never renumbered
    parent TEXT,                     -- source document id when this is one passage of it
    segment INTEGER NOT NULL REFERENCES segments(id),
    row INTEGER NOT NULL,            -- row inside the segment
    n_tokens INTEGER NOT NULL,
    text TEXT,
    metadata TEXT NOT NULL DEFAULT '{}'
);
CREATE UNIQUE INDEX IF NOT EXISTS docs_slot ON docs(segment, row);
CREATE INDEX IF NOT EXISTS docs_parent ON docs(parent);
"""



class Catalog:
    """Thin wrapper over the SQLite file; every method is one transaction."""

    def __init__(self, path: Path, create: bool = False) -> None:
        if not create and not path.is_file():
            raise IndexFormatError(f"missing index file {path}")
        try:
            self.conn = sqlite3.connect(path, isolation_level=None)  # explicit BEGIN/COMMIT below
            self.conn.execute("PRAGMA synchronous=FULL")
            self.conn.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise IndexFormatError(f"corrupted index file {path}: {exc}") from exc
        self.path = path

    def close(self) -> None:
        self.conn.close()

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        try:
            return self.conn.execute(sql, params).fetchall()
        except sqlite3.DatabaseError as exc:
            raise IndexFormatError(f"corrupted index file {self.path}: {exc}") from exc

    def check(self) -> None:
        rows = self._query("PRAGMA integrity_check")
        if rows != [("ok",)]:
            raise IndexFormatError(f"corrupted index file {self.path}: {rows[:3]}")

    # -- reads -------------------------------------------------------------------------------
    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Reads inside see one committed state: another writer's commit lands before or after them."""
        self._query("BEGIN")
        try:
            yield
        finally:
            self.conn.execute("COMMIT")

    def segments(self) -> list[dict[str, Any]]:
        rows = self._query("SELECT id, n_docs, n_tokens, files FROM segments ORDER BY id")
        return [dict(id=r[0], n_docs=r[1], n_tokens=r[2], files=json.loads(r[3])) for r in rows]

    def live_rows(self) -> dict[int, list[int]]:
        """{segment id: rows still alive}."""
        out: dict[int, list[int]] = {}
        for seg, row in self._query("SELECT segment, row FROM docs ORDER BY segment, row"):
            out.setdefault(seg, []).append(row)
        return out

    def counts(self) -> tuple[int, int]:
        n, t = self._query("SELECT COUNT(*), COALESCE(SUM(n_tokens), 0) FROM docs")[0]
        return int(n), int(t)

    def _where_in(self, column: str, values: Iterable[str], select: str = "id") -> list[tuple]:
        """Rows (`select` columns) whose `column` is one of `values`, in chunks under SQLite's variable limit."""
        values, out = list(values), []
        for i in range(0, len(values), 500):
            part = values[i : i + 500]
            marks = ",".join("?" * len(part))
            out.extend(self._query(f"SELECT {select} FROM docs WHERE {column} IN ({marks})", part))
        return out

    def _ids_where_in(self, column: str, values: Iterable[str]) -> list[str]:
        return [r[0] for r in self._where_in(column, values)]

    def contents(self, ids: Iterable[str], parents: Iterable[str]) -> dict[str, tuple[str | None, str | None, dict]]:
        """{id: (parent, text, metadata)} of the documents `ids` and of every passage of `parents`."""
        rows = self._where_in("id", ids, "id, parent, text, metadata") + self._where_in("parent", parents, "id, parent, text, metadata")
        return {r[0]: (r[1], r[2], json.loads(r[3])) for r in rows}

    def existing(self, ids: Iterable[str]) -> set[str]:
        return set(self._ids_where_in("id", ids))

    def resolve(self, ids: Sequence[str]) -> tuple[list[str], list[str]]:
        """Ids to delete for `ids` (each a document id, or a parent whose passages all go) and unknown ones."""
        targets: list[str] = []
        unknown: list[str] = []
        for i in ids:
            rows = self._query("SELECT id FROM docs WHERE id = ? OR parent = ?", (i, i))
            if rows:
                targets.extend(r[0] for r in rows)
            else:
                unknown.append(i)
        return sorted(set(targets)), unknown

    def lookup(self, slots: Sequence[tuple[int, int]]) -> list[tuple[str, str | None, dict] | None]:
        """(id, text, metadata) of the document at each (segment, row); None where none is now.

        Segment ids are never reused, so a slot names one document or, once it was deleted,
        replaced or merged elsewhere, none: never another one.
        """
        out: list[tuple[str, str | None, dict] | None] = []
        for seg, row in slots:
            r = self._query("SELECT id, text, metadata FROM docs WHERE segment = ? AND row = ?", (seg, row))
            out.append((r[0][0], r[0][1], json.loads(r[0][2])) if r else None)
        return out

    def get(self, ids: Sequence[str]) -> dict[str, tuple[int, int]]:
        out = {}
        for i in ids:
            r = self._query("SELECT segment, row FROM docs WHERE id = ?", (i,))
            if r:
                out[i] = (r[0][0], r[0][1])
        return out

    def documents(self, ids: Sequence[str]) -> dict[str, tuple[str | None, str | None, dict]]:
        """{id: (parent, text, metadata)} of those of `ids` that exist."""
        return {r[0]: (r[1], r[2], json.loads(r[3])) for r in self._where_in("id", ids, "id, parent, text, metadata")}

    def scan(self, filter: Mapping[str, Any] | None, after: str | None, limit: int) -> list[tuple]:
        """Up to `limit` (id, parent, text, metadata) rows in id order, after id `after`, matching `filter`."""
        where, params = filter_sql(filter) if filter is not None else ("1", [])
        if after is not None:
            where, params = f"({where}) AND id > ?", [*params, after]
        rows = self._query(f"SELECT id, parent, text, metadata FROM docs WHERE {where} ORDER BY id LIMIT ?", [*params, limit])
        return [(r[0], r[1], r[2], json.loads(r[3])) for r in rows]

    def metadata_keys(self) -> dict[str, int]:
        """{top-level metadata key: number of documents that have it}."""
        rows = self._query("SELECT j.key, COUNT(*) FROM docs, json_each(docs.metadata) AS j GROUP BY j.key ORDER BY j.key")
        return {r[0]: int(r[1]) for r in rows}

    def rows_of_segment(self, seg: int) -> list[tuple]:
        return self._query(
            "SELECT id, parent, row, n_tokens, text, metadata FROM docs WHERE segment = ? ORDER BY row", (seg,)
        )

    def filtered_slots(self, filter: Mapping[str, Any]) -> dict[int, list[int]]:
        """{segment: rows} of documents whose metadata matches every key of `filter`."""
        where, params = filter_sql(filter)
        out: dict[int, list[int]] = {}
        for seg, row in self._query(f"SELECT segment, row FROM docs WHERE {where}", params):
            out.setdefault(seg, []).append(row)
        return out

    # -- writes (each one transaction) -------------------------------------------------------
    def commit(
        self,
        segments: Sequence[tuple[dict[str, Any], Sequence[tuple]]],
        replace: Sequence[str] = (),
        drop_segments: Sequence[int] = (),
        pause: Any = None,
    ) -> None:
        """One transaction: drop `replace` ids and `drop_segments`, then insert each (segment record, docs).

        docs rows are (id, parent, row, n_tokens, text, metadata dict).
        """
        c = self.conn
        try:
            c.execute("BEGIN IMMEDIATE")
            for i in range(0, len(replace), 500):
                part = list(replace[i : i + 500])
                c.execute(f"DELETE FROM docs WHERE id IN ({','.join('?' * len(part))})", part)
            for seg in drop_segments:
                c.execute("DELETE FROM docs WHERE segment = ?", (seg,))
                c.execute("DELETE FROM segments WHERE id = ?", (seg,))
            for rec, docs in segments:
                c.execute(
                    "INSERT INTO segments (id, n_docs, n_tokens, files, created) VALUES (?, ?, ?, ?, ?)",
                    (rec["id"], rec["n_docs"], rec["n_tokens"], json.dumps(rec["files"]), rec["created"]),
                )
                c.executemany(
                    "INSERT INTO docs (id, parent, segment, row, n_tokens, text, metadata) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(d[0], d[1], rec["id"], d[2], d[3], d[4], json.dumps(d[5], ensure_ascii=False)) for d in docs],
                )
            c.execute("DELETE FROM segments WHERE id NOT IN (SELECT DISTINCT segment FROM docs)")
            if pause is not None:
                pause()  # test hook: a writer killed here must leave the previous state
            c.execute("COMMIT")
        except sqlite3.IntegrityError as exc:
            c.execute("ROLLBACK")
            raise InputError(f"could not add documents: {exc}") from exc
        except BaseException:
            if c.in_transaction:
                c.execute("ROLLBACK")
            raise

    def data_version(self) -> int:
        """Changes whenever another connection commits (SQLite's own change counter)."""
        return int(self._query("PRAGMA data_version")[0][0])

    def ids_with_parent(self, parents: Sequence[str]) -> list[str]:
        return self._ids_where_in("parent", parents)

    def delete(self, ids: Sequence[str]) -> None:
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        try:
            for i in range(0, len(ids), 500):
                part = list(ids[i : i + 500])
                c.execute(f"DELETE FROM docs WHERE id IN ({','.join('?' * len(part))})", part)
            c.execute("DELETE FROM segments WHERE id NOT IN (SELECT DISTINCT segment FROM docs)")
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise


def clean_metadata(meta: Mapping[str, Any] | None, doc_id: str) -> dict[str, Any]:
    """`meta` as the catalog will store it: JSON (numpy scalars become numbers, tuples lists).

    Checked before anything is written. NaN and infinity are refused: SQLite's JSON functions
    reject them, so one such value would break every filtered search of the index.
    """
    if meta is None:
        return {}
    if not isinstance(meta, Mapping):
        raise InputError(f"metadata of {doc_id!r} must be a dict, not {type(meta).__name__}")
    try:
        return json.loads(json.dumps(dict(meta), allow_nan=False, default=_plain))
    except (TypeError, ValueError) as exc:
        raise InputError(f"metadata of {doc_id!r}: {exc} (use strings, finite numbers, booleans, lists and dicts)") from None


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):  # numpy / pandas scalars
        return value.item()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
