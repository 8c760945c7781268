"""The catalog: document ids, texts, metadata and segment records in one SQLite file.

SQLite is the commit point of every write: a segment's files exist on disk before its row is
inserted here, and ids point at (segment, row) pairs only once the transaction commits. Rows are
versioned by generation (see lfm_colbert.index.schema): a reader that pinned generation g reads
the state of g with plain statements, however many commits land meanwhile, and no reader ever
holds a transaction open or blocks a writer.

One `Catalog` may be used from many threads: each thread gets its own SQLite connection.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from lfm_colbert.errors import IndexBusyError, IndexClosedError, IndexFormatError, InputError
from lfm_colbert.index import lexical, schema
from lfm_colbert.index.checks import check_text, clean_metadata  # noqa: F401  (re-exported)
# The filter language lives in its own module; re-exported here for the catalog's callers.
from lfm_colbert.index.filters import filter_sql  # noqa: F401
from lfm_colbert.index.schema import row_checksum

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_INT64 = (-(2**63), 2**63 - 1)
_CHUNK = 500  # values per IN (...) under SQLite's variable limit


class Catalog:
    """Thin wrapper over the SQLite file; every write method is one transaction.

    Read methods take `gen`, the generation to read (see `generation()`); None reads the live rows
    as of that statement, which is one committed state only within that one statement.
    """

    def __init__(self, path: Path, index_id: str | None = None) -> None:
        if not path.is_file():
            raise IndexFormatError(f"missing index file {path}")
        if path.stat().st_size == 0:
            raise IndexFormatError(f"corrupted index file {path}: it is empty (0 bytes)")
        self.path = path
        self.index_id = index_id
        self._local = threading.local()
        self._conns: dict[int, sqlite3.Connection] = {}  # thread id -> its connection
        self._guard = threading.Lock()
        self._closed = False
        self.version = schema.recognise(self._conn(), path, index_id)

    # -- connections ------------------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        with self._guard:
            if self._closed:
                raise IndexClosedError(f"the index at {self.path.parent} is closed")
            alive = {t.ident for t in threading.enumerate()}
            for ident in [i for i in self._conns if i not in alive]:  # threads that ended
                self._conns.pop(ident).close()
            try:
                conn = schema.connect(self.path)
            except sqlite3.Error as exc:
                raise IndexFormatError(f"cannot open index file {self.path}: {exc}") from exc
            self._conns[threading.get_ident()] = conn
        self._local.conn = conn
        return conn

    def close(self) -> None:
        with self._guard:
            self._closed = True
            for conn in self._conns.values():
                conn.close()
            self._conns.clear()
        self._local = threading.local()

    def _error(self, exc: sqlite3.Error) -> Exception:
        msg = str(exc)
        if isinstance(exc, sqlite3.ProgrammingError) and "closed" in msg:
            return IndexClosedError(f"the index at {self.path.parent} is closed")
        if "locked" in msg or "busy" in msg:
            return IndexBusyError(f"{self.path.parent} is being written by another process; try again ({msg})")
        if isinstance(exc, sqlite3.OperationalError) and "readonly" in msg:
            return IndexFormatError(f"cannot write to {self.path}: {msg} (is the index read-only?)")
        return IndexFormatError(f"corrupted index file {self.path}: {msg}")

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        conn = self._conn()
        try:
            return conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        except (OverflowError, UnicodeEncodeError) as exc:  # values the checks before should have refused
            raise InputError(f"a value SQLite cannot store: {exc}") from None

    def _vis(self, gen: int | None, table: str = "") -> str:
        """SQL: the rows of `table` in the state of generation `gen` (None: live now)."""
        p = f"{table}." if table else ""
        if self.version == 1:
            return "1"
        if gen is None:
            return f"{p}removed IS NULL"
        return f"({p}added <= {int(gen)} AND ({p}removed IS NULL OR {p}removed > {int(gen)}))"

    def _meta(self, key: str) -> str:
        rows = self._query("SELECT value FROM meta WHERE key = ?", (key,))
        if not rows:
            raise IndexFormatError(f"corrupted index file {self.path}: no {key!r} in its meta table")
        return rows[0][0]

    def generation(self) -> int:
        """The generation of the last commit (0 for a catalog written before generations)."""
        if self.version == 1:
            if not self._query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"):
                return 0
            self.version = schema.recognise(self._conn(), self.path, None)  # a writer upgraded it meanwhile
        value = self._meta("generation")
        if not value.isdigit():
            raise IndexFormatError(f"corrupted index file {self.path}: bad generation {value!r}")
        return int(value)

    # -- checked rows -------------------------------------------------------------------------------
    def _doc(self, r: Sequence[Any]) -> tuple:
        """(id, parent, segment, row, n_tokens, text, metadata dict) from a row of docs' DOC_COLUMNS + checksum."""
        if self.version > 1 and row_checksum(r[:8]) != r[8]:
            raise IndexFormatError(
                f"corrupted index file {self.path}: the row of document {r[0]!r} changed since it was written")
        try:
            meta = json.loads(r[6])
        except (TypeError, ValueError) as exc:
            raise IndexFormatError(f"corrupted index file {self.path}: metadata of {r[0]!r}: {exc}") from None
        if not isinstance(meta, dict):
            raise IndexFormatError(f"corrupted index file {self.path}: metadata of {r[0]!r} is not an object")
        return (r[0], r[1], r[2], r[3], r[4], r[5], meta)

    _DOCS = "SELECT id, parent, segment, row, n_tokens, text, metadata, added, checksum FROM docs"

    def _docs(self, where: str, params: Sequence[Any] = (), tail: str = "") -> list[tuple]:
        sql = self._DOCS if self.version > 1 else self._DOCS.replace("added, checksum", "0, ''")
        return [self._doc(r) for r in self._query(f"{sql} WHERE {where} {tail}", params)]

    def _segment(self, r: Sequence[Any]) -> dict[str, Any]:
        if self.version > 1 and row_checksum(r[:6]) != r[6]:
            raise IndexFormatError(f"corrupted index file {self.path}: the record of segment {r[0]} changed since it was written")
        try:
            files = json.loads(r[3])
        except (TypeError, ValueError) as exc:
            raise IndexFormatError(f"corrupted index file {self.path}: files of segment {r[0]}: {exc}") from None
        if not (isinstance(files, dict) and files and all(isinstance(f, str) and f.endswith(".npy") and "/" not in f
                and isinstance(c, str) and _HEX64.match(c) for f, c in files.items())) or "doclens.npy" not in files:
            raise IndexFormatError(f"corrupted index file {self.path}: files of segment {r[0]}: {r[3]!r}")
        if not all(isinstance(v, int) and v >= 0 for v in (r[0], r[1], r[2])):
            raise IndexFormatError(f"corrupted index file {self.path}: segment record {tuple(r[:3])}")
        return dict(id=r[0], n_docs=r[1], n_tokens=r[2], files=files)

    # -- reads ----------------------------------------------------------------------------------------
    def segments(self, gen: int | None = None) -> list[dict[str, Any]]:
        cols = "id, n_docs, n_tokens, files, created, added, checksum" if self.version > 1 else \
            "id, n_docs, n_tokens, files, created, 0, ''"
        return [self._segment(r) for r in self._query(f"SELECT {cols} FROM segments WHERE {self._vis(gen)} ORDER BY id")]

    def live_rows(self, gen: int | None = None) -> dict[int, list[int]]:
        """{segment id: rows alive in that state}."""
        out: dict[int, list[int]] = {}
        for seg, row in self._query(f"SELECT segment, row FROM docs WHERE {self._vis(gen)} ORDER BY segment, row"):
            out.setdefault(seg, []).append(row)
        return out

    def counts(self, gen: int | None = None) -> tuple[int, int]:
        n, t = self._query(f"SELECT COUNT(*), COALESCE(SUM(n_tokens), 0) FROM docs WHERE {self._vis(gen)}")[0]
        return int(n), int(t)

    def _where_in(self, column: str, values: Iterable[Any], gen: int | None) -> list[tuple]:
        values, out = list(values), []
        for i in range(0, len(values), _CHUNK):
            part = values[i : i + _CHUNK]
            out.extend(self._docs(f"{column} IN ({','.join('?' * len(part))}) AND {self._vis(gen)}", part))
        return out

    def documents(self, ids: Sequence[str], gen: int | None = None) -> dict[str, tuple]:
        """{id: (id, parent, segment, row, n_tokens, text, metadata)} of those of `ids` in that state."""
        return {d[0]: d for d in self._where_in("id", ids, gen)}

    def contents(self, ids: Iterable[str], parents: Iterable[str]) -> dict[str, tuple[str | None, str | None, dict]]:
        """{id: (parent, text, metadata)} of the live documents `ids` and every passage of `parents`."""
        rows = self._where_in("id", ids, None) + self._where_in("parent", parents, None)
        return {d[0]: (d[1], d[5], d[6]) for d in rows}

    def existing(self, ids: Iterable[str]) -> set[str]:
        return {d[0] for d in self._where_in("id", ids, None)}

    def ids_with_parent(self, parents: Sequence[str]) -> list[str]:
        return [d[0] for d in self._where_in("parent", parents, None)]

    def resolve(self, ids: Sequence[str]) -> tuple[list[str], list[str]]:
        """Live ids to delete for `ids` (each a document id, or a parent whose passages all go) and unknown ones."""
        by_id = {d[0] for d in self._where_in("id", ids, None)}
        by_parent = self._where_in("parent", ids, None)
        parents = {d[1] for d in by_parent}
        unknown = [i for i in ids if i not in by_id and i not in parents]
        return sorted(by_id | {d[0] for d in by_parent}), unknown

    def lookup(self, slots: Sequence[tuple[int, int]]) -> list[tuple[str, str | None, dict]]:
        """(id, text, metadata) of the document at each (segment, row). A slot is never reused, and a
        reader's pinned state keeps its rows, so a slot it ranked always names its document."""
        out = []
        for seg, row in slots:
            found = self._docs("segment = ? AND row = ?", (int(seg), int(row)))
            if not found:
                raise IndexFormatError(f"corrupted index file {self.path}: no document at segment {seg} row {row}")
            out.append((found[0][0], found[0][5], found[0][6]))
        return out

    def scan(self, filter: Mapping[str, Any] | None, after: str | None, limit: int, gen: int | None = None) -> list[tuple]:
        """Up to `limit` (id, parent, text, metadata) rows in id order, after id `after`, matching `filter`."""
        where, params = filter_sql(filter) if filter is not None else ("1", [])
        where = f"({where}) AND {self._vis(gen)}"
        if after is not None:
            where, params = f"{where} AND id > ?", [*params, after]
        rows = self._docs(where, [*params, min(limit, _INT64[1])], "ORDER BY id LIMIT ?")
        return [(d[0], d[1], d[5], d[6]) for d in rows]

    def metadata_keys(self, gen: int | None = None) -> dict[str, int]:
        """{top-level metadata key: number of documents that have it}."""
        rows = self._query("SELECT j.key, COUNT(*) FROM docs, json_each(docs.metadata) AS j "
                           f"WHERE {self._vis(gen, 'docs')} GROUP BY j.key ORDER BY j.key")
        return {r[0]: int(r[1]) for r in rows}

    def rows_of_segment(self, seg: int, gen: int | None = None) -> list[tuple]:
        """(id, parent, row, n_tokens, text, metadata) of a segment's documents in that state, by row."""
        return [(d[0], d[1], d[3], d[4], d[5], d[6]) for d in self._docs(f"segment = ? AND {self._vis(gen)}", (seg,), "ORDER BY row")]

    def filtered_slots(self, filter: Mapping[str, Any], gen: int | None = None) -> dict[int, list[int]]:
        """{segment: rows} of documents whose metadata matches every key of `filter`."""
        where, params = filter_sql(filter)
        out: dict[int, list[int]] = {}
        for seg, row in self._query(f"SELECT segment, row FROM docs WHERE ({where}) AND {self._vis(gen)}", params):
            out.setdefault(seg, []).append(row)
        return out

    def check(self) -> None:
        """SQLite's integrity check, then every row's checksum and every value's structure."""
        rows = self._query("PRAGMA integrity_check")
        if rows != [("ok",)]:
            raise IndexFormatError(f"corrupted index file {self.path}: {rows[:3]}")
        schema.recognise(self._conn(), self.path, self.index_id)
        self.segments(None)
        if self.version > 1:
            self.generation()
            for r in self._query(f"SELECT {', '.join(schema.SEG_COLUMNS)}, checksum FROM segments"):
                self._segment(r)
        cur_sql = self._DOCS if self.version > 1 else self._DOCS.replace("added, checksum", "0, ''")
        conn = self._conn()
        try:
            cur = conn.execute(cur_sql)
            while batch := cur.fetchmany(10_000):
                for r in batch:
                    self._doc(r)
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    # -- writes (the caller holds the writer lock) ------------------------------------------------------
    def _transaction(self, work) -> Any:
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
            out = work(conn)
            conn.execute("COMMIT")
            return out
        except sqlite3.IntegrityError as exc:
            conn.execute("ROLLBACK")
            raise InputError(f"could not write to the index: {exc}") from exc
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise self._error(exc) from exc
            raise

    def upgrade(self, index_id: str, next_segment: int) -> None:
        """Rewrite a version 1 catalog as the current version (see schema.upgrade)."""
        try:
            schema.upgrade(self._conn(), index_id, next_segment)
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        self.index_id = index_id
        self.version = schema.recognise(self._conn(), self.path, index_id)

    def reserve_segment(self, taken: set[int], used: Sequence[int] = ()) -> int:
        """A new segment id (never used before, its directory name free), recorded as pending until a
        commit names it: a writer that dies leaves it to be removed by the next one. A spare id the
        last commit reserved serves first (no transaction of its own)."""
        spare = [s for s in self.pending() if s not in taken and s not in used]
        if spare:
            return spare[0]

        def work(conn):
            sid = int(conn.execute("SELECT value FROM meta WHERE key = 'next_segment'").fetchone()[0])
            while sid in taken:
                sid += 1
            conn.execute("UPDATE meta SET value = ? WHERE key = 'next_segment'", (str(sid + 1),))
            conn.execute("INSERT INTO pending (segment, started) VALUES (?, ?)", (sid, time.time()))
            return sid
        return self._transaction(work)

    def pending(self) -> list[int]:
        return [r[0] for r in self._query("SELECT segment FROM pending ORDER BY segment")]

    def forget_pending(self, sids: Sequence[int]) -> None:
        self._transaction(lambda c: c.executemany("DELETE FROM pending WHERE segment = ?", [(s,) for s in sids]))

    def set_meta(self, key: str, value: str | None) -> None:
        def work(conn):
            conn.execute("DELETE FROM meta WHERE key = ?", (key,))
            if value is not None:
                conn.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (key, value))
        self._transaction(work)

    def get_meta(self, key: str) -> str | None:
        rows = self._query("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def commit(
        self,
        segments: Sequence[tuple[dict[str, Any], Sequence[tuple]]] = (),
        replace: Sequence[str] = (),
        drop_segments: Sequence[int] = (),
        pause: Any = None,
    ) -> int:
        """One transaction, one new generation: retire `replace` ids and `drop_segments`, then insert each
        (segment record, docs). docs rows are (id, parent, row, n_tokens, text, metadata dict).
        Returns the new generation."""
        # New documents are tokenized for the keyword index before the write transaction begins.
        tokens = [lexical.prepare(rec["id"], [(d[2], d[4], d[5]) for d in docs]) if not drop_segments else None
                  for rec, docs in segments]

        def work(conn):
            gen = int(conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0]) + 1
            for i in range(0, len(replace), _CHUNK):
                part = list(replace[i : i + _CHUNK])
                conn.execute(f"UPDATE docs SET removed = ? WHERE removed IS NULL AND id IN ({','.join('?' * len(part))})",
                             [gen, *part])
            for seg in drop_segments:
                conn.execute("UPDATE docs SET removed = ? WHERE removed IS NULL AND segment = ?", (gen, seg))
            for (rec, docs), tok in zip(segments, tokens):
                seg = (rec["id"], rec["n_docs"], rec["n_tokens"], json.dumps(rec["files"]), rec["created"], gen)
                conn.execute(f"INSERT INTO segments ({', '.join(schema.SEG_COLUMNS)}, checksum) VALUES (?, ?, ?, ?, ?, ?, ?)",
                             (*seg, row_checksum(seg)))
                rows = [(d[0], d[1], rec["id"], d[2], d[3], d[4], json.dumps(d[5], ensure_ascii=False), gen) for d in docs]
                conn.executemany(f"INSERT INTO docs ({', '.join(schema.DOC_COLUMNS)}, checksum) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                 [(*r, row_checksum(r)) for r in rows])
                lexical.commit(conn, rec["id"], docs, gen, drop_segments, tok)  # same transaction: never out of step
                conn.execute("DELETE FROM pending WHERE segment = ?", (rec["id"],))
            if segments and conn.execute("SELECT 1 FROM pending").fetchone() is None:  # a spare id for the next write
                sid = int(conn.execute("SELECT value FROM meta WHERE key = 'next_segment'").fetchone()[0])
                conn.execute("UPDATE meta SET value = ? WHERE key = 'next_segment'", (str(sid + 1),))
                conn.execute("INSERT INTO pending (segment, started) VALUES (?, ?)", (sid, time.time()))
            # A segment left with no live document retires with this commit.
            conn.execute("UPDATE segments SET removed = ? WHERE removed IS NULL AND NOT EXISTS "
                         "(SELECT 1 FROM docs WHERE docs.segment = segments.id AND docs.removed IS NULL)", (gen,))
            conn.execute("UPDATE meta SET value = ? WHERE key = 'generation'", (str(gen),))
            lexical.record(conn, gen)
            if pause is not None:
                pause()  # test hook: a writer killed here must leave the previous state
            return gen
        return self._transaction(work)

    def rebuild_lexical(self, force: bool = False, pause: Any = None) -> int | None:
        """Build the lexical postings from the stored texts when missing or behind (an older lfm-colbert
        wrote since), or always with `force`; one transaction. Returns the documents tokenized."""
        has, upto = lexical.status(self)
        if has and upto == self.generation() and not force:
            return None

        def work(conn):
            n = lexical.rebuild(conn, int(conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0]))
            if pause is not None:
                pause()  # test hook: a writer killed here leaves the postings as they were
            return n
        return self._transaction(work)

    def delete(self, ids: Sequence[str], pause: Any = None) -> int:
        return self.commit(replace=ids, pause=pause)

    def retired(self, upto: int) -> list[int]:
        """Segments retired at or before generation `upto`."""
        return [r[0] for r in self._query("SELECT id FROM segments WHERE removed IS NOT NULL AND removed <= ?", (upto,))]

    def has_removed(self, upto: int) -> bool:
        return bool(self._query("SELECT 1 FROM docs WHERE removed IS NOT NULL AND removed <= ? LIMIT 1", (upto,)))

    def purge(self, upto: int, segments: Sequence[int]) -> None:
        """Drop rows removed at or before `upto` (no reader needs them), and the records of `segments`
        (retired, their files gone)."""
        def work(conn):
            lexical.purge_removed(conn, upto)
            conn.execute("DELETE FROM docs WHERE removed IS NOT NULL AND removed <= ?", (upto,))
            conn.executemany("DELETE FROM segments WHERE id = ? AND removed IS NOT NULL", [(s,) for s in segments])
        self._transaction(work)
