"""The lexical (keyword) side of an index: BM25 postings kept in the catalog itself.

Why our own postings tables in SQLite, not FTS5 or a bm25s index file:
  - one transaction: postings are written by the very `BEGIN IMMEDIATE ... COMMIT` that inserts the
    documents' rows (lfm_colbert.index.metadata.Catalog.commit), so after a crash the lexical index
    and the catalog can never disagree, and no second file needs its own commit protocol;
  - the project's tokenizers (lfm_colbert.eval.bm25): bm25s's stemming and stop words for Latin,
    Cyrillic and Greek scripts, character bigrams for Chinese/Japanese/Korean/Thai, folded spellings
    for Arabic. FTS5's unicode61 tokenizer keeps a CJK clause as one "word" (no match inside it) and
    does not fold Arabic letter variants, and its bm25() is not bm25s's Lucene formula;
  - generations: a posting belongs to a document slot (segment, row) that is never reused, so a
    reader that pinned a generation scores exactly that state's live documents (its alive masks).

Tables (created with the catalog, or built by the first write of an index made before them):
    lex_terms(id, term)               the vocabulary; a term id is never reused
    lex_docs(slot, len, lang)         per document with text: its token count and tokenizer language
    lex_doc_terms(slot, terms)        per document: its (term id, tf) pairs as int32, to purge and copy
    lex_postings(term, slot, tf)      WITHOUT ROWID, ordered by term: a query reads its terms' runs
where slot = segment * 2**32 + row. meta 'lexical' holds the settings (JSON), meta
'lexical_generation' the generation the postings were last brought up to; it equals 'generation'
after every commit of this code, so a commit by an older lfm-colbert (which writes no postings) is
noticed and the next write rebuilds the postings.

Language of a document: its metadata 'lang' when that is a language code (2 or 3 letters), else
guessed from its script (`guess_lang`). A query is tokenized once per language present in the
index, and each document is scored with the query's tokens in its own language.

Scoring is bm25s's Lucene BM25 over the live documents of the pinned state (N, average length and
document frequencies are those of that state):
    idf(t) = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))
    score(d) = sum over query tokens t (repeats count) of idf(t) * tf / (tf + k1 * (1 - b + b * len(d) / avglen))
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections import Counter
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from lfm_colbert.errors import IndexFormatError

K1, B = 1.5, 0.75
SETTINGS = {"version": 1, "method": "lucene", "k1": K1, "b": B, "lang": "auto"}
SHIFT = 32
_ROW = (1 << SHIFT) - 1
_CHUNK = 500
_LANG = re.compile(r"^[a-z]{2,3}$")

SCHEMA = """
CREATE TABLE IF NOT EXISTS lex_terms (id INTEGER PRIMARY KEY, term TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS lex_docs (slot INTEGER PRIMARY KEY, len INTEGER NOT NULL, lang TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS lex_doc_terms (slot INTEGER PRIMARY KEY, terms BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS lex_postings (
    term INTEGER NOT NULL, slot INTEGER NOT NULL, tf INTEGER NOT NULL, PRIMARY KEY (term, slot)
) WITHOUT ROWID;
"""
TABLES = ("lex_terms", "lex_docs", "lex_doc_terms", "lex_postings")


def slot_key(segment: int, row: int) -> int:
    return (int(segment) << SHIFT) | int(row)


# -- languages and tokens -------------------------------------------------------------------------
def guess_lang(text: str) -> str:
    """A tokenizer language from the script most of the text's letters are written in: CJK -> zh
    (bigrams: right for ja/ko/th too), Arabic -> ar, Devanagari -> hi, Cyrillic -> ru, Greek -> el,
    anything else -> en (bm25s's English recipe). Give metadata 'lang' to choose exactly."""
    counts: Counter = Counter()
    for ch in text[:2000]:
        if not ch.isalpha():
            continue
        o = ord(ch)
        if 0x3040 <= o <= 0x30FF or 0x3400 <= o <= 0x9FFF or 0xAC00 <= o <= 0xD7AF or 0x0E00 <= o <= 0x0EFF \
                or 0xF900 <= o <= 0xFAFF or 0x20000 <= o <= 0x2FFFF:
            counts["zh"] += 1
        elif 0x0600 <= o <= 0x06FF or 0x0750 <= o <= 0x077F or 0xFB50 <= o <= 0xFEFF:
            counts["ar"] += 1
        elif 0x0900 <= o <= 0x097F:
            counts["hi"] += 1
        elif 0x0400 <= o <= 0x04FF:
            counts["ru"] += 1
        elif 0x0370 <= o <= 0x03FF:
            counts["el"] += 1
        else:
            counts["en"] += 1
    return counts.most_common(1)[0][0] if counts else "en"


def doc_lang(text: str, metadata: Mapping[str, Any] | None) -> str:
    lang = (metadata or {}).get("lang")
    if isinstance(lang, str) and _LANG.match(lang.lower()):
        return lang.lower()
    return guess_lang(text)


def tokenize(texts: Sequence[str], lang: str) -> list[list[str]]:
    """Tokens of each text for language `lang` (lfm_colbert.eval.bm25's per-language tokenizers)."""
    from lfm_colbert.eval.bm25 import tokenize as bm25_tokenize

    return bm25_tokenize(list(texts), lang)


def tokenize_docs(docs: Sequence[tuple[int, str, str]]) -> list[tuple[int, str, list[str]]]:
    """(slot, lang, tokens) of each (slot, text, lang), one tokenizer call per language."""
    by_lang: dict[str, list[int]] = {}
    for i, (_, _, lang) in enumerate(docs):
        by_lang.setdefault(lang, []).append(i)
    out: list[Any] = [None] * len(docs)
    for lang, idx in by_lang.items():
        for i, toks in zip(idx, tokenize([docs[i][1] for i in idx], lang)):
            out[i] = (docs[i][0], lang, toks)
    return out


# -- writing (inside the caller's transaction) ------------------------------------------------------
def enabled(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT 1 FROM meta WHERE key = 'lexical'").fetchone() is not None


def create(conn: sqlite3.Connection, generation: int = 0) -> None:
    """The tables and settings, in the caller's transaction."""
    for statement in SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('lexical', ?)", (json.dumps(SETTINGS),))
    conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('lexical_generation', ?)", (str(generation),))


def _term_ids(conn: sqlite3.Connection, terms: Iterable[str], create_missing: bool) -> dict[str, int]:
    terms = list(set(terms))
    ids: dict[str, int] = {}
    for i in range(0, len(terms), _CHUNK):
        part = terms[i : i + _CHUNK]
        ids.update(conn.execute(f"SELECT term, id FROM lex_terms WHERE term IN ({','.join('?' * len(part))})", part).fetchall())
    if create_missing:
        for t in terms:
            if t not in ids:
                ids[t] = conn.execute("INSERT INTO lex_terms (term) VALUES (?)", (t,)).lastrowid
    return ids


def _insert(conn: sqlite3.Connection, slot: int, length: int, lang: str, pairs: np.ndarray) -> None:
    """pairs: (n_terms, 2) int32 of (term id, tf)."""
    conn.execute("INSERT INTO lex_docs (slot, len, lang) VALUES (?, ?, ?)", (slot, length, lang))
    conn.execute("INSERT INTO lex_doc_terms (slot, terms) VALUES (?, ?)", (slot, pairs.astype("<i4").tobytes()))
    conn.executemany("INSERT INTO lex_postings (term, slot, tf) VALUES (?, ?, ?)",
                     [(int(t), slot, int(f)) for t, f in pairs])


def prepare(segment: int, rows: Sequence[tuple[int, str | None, Mapping[str, Any] | None]]) -> list[tuple[int, str, list[str]]]:
    """(slot, lang, tokens) of a segment's documents with text: rows are (row, text, metadata)."""
    return tokenize_docs([(slot_key(segment, r), text, doc_lang(text, meta)) for r, text, meta in rows if text is not None])


def add(conn: sqlite3.Connection, segment: int, rows: Sequence[tuple[int, str | None, Mapping[str, Any] | None]],
        tokenized: list[tuple[int, str, list[str]]] | None = None) -> None:
    """Postings of a new segment's documents: rows are (row, text, metadata); no text, no postings.
    `tokenized`: what `prepare` gave for these rows (tokenized before the transaction began)."""
    if tokenized is None:
        tokenized = prepare(segment, rows)
    ids = _term_ids(conn, (t for _, _, toks in tokenized for t in toks), create_missing=True)
    for slot, lang, toks in tokenized:
        tf = Counter(ids[t] for t in toks)
        pairs = np.array(sorted(tf.items()), dtype=np.int64).reshape(-1, 2)
        _insert(conn, slot, len(toks), lang, pairs)


def copy(conn: sqlite3.Connection, moves: Sequence[tuple[int, int]]) -> list[int]:
    """Copy the postings of documents a rewrite moves, (old slot, new slot) each, without tokenizing
    again. Returns the new slots whose old slot had none (to tokenize)."""
    missing = []
    for old, new in moves:
        doc = conn.execute("SELECT len, lang FROM lex_docs WHERE slot = ?", (old,)).fetchone()
        blob = conn.execute("SELECT terms FROM lex_doc_terms WHERE slot = ?", (old,)).fetchone()
        if doc is None or blob is None:
            missing.append(new)
            continue
        _insert(conn, new, doc[0], doc[1], np.frombuffer(blob[0], dtype="<i4").reshape(-1, 2))
    return missing


def commit(conn: sqlite3.Connection, segment: int, docs: Sequence[tuple], gen: int, moved_from: Sequence[int],
           tokenized: list[tuple[int, str, list[str]]] | None = None) -> None:
    """Postings of the docs rows (id, parent, row, n_tokens, text, metadata) a commit inserts into
    `segment`; a document moved by a rewrite out of a segment of `moved_from` keeps its postings
    (copied, not tokenized again). Inside the commit's transaction; then the generation is recorded."""
    if not enabled(conn):
        return
    todo = list(docs)
    if moved_from:
        where = ",".join("?" * len(moved_from))
        moves, rest = [], []
        for d in docs:
            old = conn.execute(f"SELECT segment, row FROM docs WHERE id = ? AND removed = ? AND segment IN ({where})",
                               (d[0], gen, *moved_from)).fetchone()
            (moves.append((slot_key(*old), slot_key(segment, d[2]))) if old else rest.append(d))
        missing = set(copy(conn, moves))
        todo = rest + [d for d in docs if slot_key(segment, d[2]) in missing]
        tokenized = None
    add(conn, segment, [(d[2], d[4], d[5]) for d in todo], tokenized)


def record(conn: sqlite3.Connection, gen: int) -> None:
    if enabled(conn):
        conn.execute("UPDATE meta SET value = ? WHERE key = 'lexical_generation'", (str(gen),))


def purge_removed(conn: sqlite3.Connection, upto: int) -> None:
    """Forget the postings of document rows removed at or before `upto` (about to be purged)."""
    if enabled(conn):
        purge(conn, [slot_key(s, r) for s, r in conn.execute(
            "SELECT segment, row FROM docs WHERE removed IS NOT NULL AND removed <= ?", (upto,)).fetchall()])


def purge(conn: sqlite3.Connection, slots: Sequence[int]) -> None:
    """Forget the postings of `slots` (document rows being purged)."""
    for slot in slots:
        blob = conn.execute("SELECT terms FROM lex_doc_terms WHERE slot = ?", (slot,)).fetchone()
        if blob is not None:
            pairs = np.frombuffer(blob[0], dtype="<i4").reshape(-1, 2)
            conn.executemany("DELETE FROM lex_postings WHERE term = ? AND slot = ?", [(int(t), slot) for t in pairs[:, 0]])
        conn.execute("DELETE FROM lex_doc_terms WHERE slot = ?", (slot,))
        conn.execute("DELETE FROM lex_docs WHERE slot = ?", (slot,))


def rebuild(conn: sqlite3.Connection, generation: int) -> int:
    """Postings for every document row the catalog holds (live, or kept for a pinned reader), from
    scratch, in the caller's transaction. Returns the number of documents tokenized."""
    for table in TABLES[1:]:  # the vocabulary stays: a reader between two statements keeps valid term ids
        conn.execute(f"DROP TABLE IF EXISTS {table}")
    create(conn, generation)
    n = 0
    cur = conn.execute("SELECT segment, row, text, metadata FROM docs WHERE text IS NOT NULL ORDER BY segment, row")
    while batch := cur.fetchmany(5000):
        by_seg: dict[int, list] = {}
        for seg, row, text, meta in batch:
            try:
                meta = json.loads(meta)
            except (TypeError, ValueError):
                meta = {}
            by_seg.setdefault(seg, []).append((row, text, meta if isinstance(meta, dict) else {}))
        for seg, rows in by_seg.items():
            add(conn, seg, rows)
        n += len(batch)
    return n


# -- reading ------------------------------------------------------------------------------------------
def status(catalog: Any) -> tuple[bool, int]:
    """(has lexical tables, the generation its postings were brought up to)."""
    rows = dict(catalog._query("SELECT key, value FROM meta WHERE key IN ('lexical', 'lexical_generation')")) \
        if catalog.version > 1 else {}
    if "lexical" not in rows:
        return False, -1
    value = rows.get("lexical_generation", "")
    return True, int(value) if value.isdigit() else -1


def describe(catalog: Any, generation: int) -> dict[str, Any] | None:
    """For `info`: the keyword index's settings and size, or None when the index has none (yet)."""
    has, upto = status(catalog)
    if not has:
        return None
    docs, terms = (catalog._query(f"SELECT COUNT(*) FROM {t}")[0][0] for t in ("lex_docs", "lex_terms"))
    return {**SETTINGS, "up_to_date": upto >= generation, "documents_with_postings": docs, "terms": terms}


def _alive(state: Any, slots: np.ndarray, allowed: Mapping[int, Sequence[int]] | None = None) -> np.ndarray:
    """Which of `slots` are live in `state` (and, with `allowed`, in those {segment: rows})."""
    segs, rows = slots >> SHIFT, slots & _ROW
    ok = np.zeros(len(slots), dtype=bool)
    for s in np.unique(segs):
        sel = segs == s
        seg = state.segments.get(int(s))
        if seg is None:
            continue
        mask = seg.alive
        if allowed is not None:
            mask = np.zeros(len(seg.alive), dtype=bool)
            mask[list(allowed.get(int(s), []))] = True
            mask &= seg.alive
        r = rows[sel]
        ok[sel] = (r < len(mask)) & mask[np.minimum(r, len(mask) - 1)]
    return ok


class Lexicon:
    """BM25 over the postings of one index's catalog, answering from a reader's pinned state."""

    def __init__(self, catalog: Any) -> None:
        self.catalog = catalog
        self._stats: tuple[int, tuple[int, float, list[str]]] | None = None  # (generation, (N, avglen, langs))

    def check(self, state: Any) -> None:
        has, upto = status(self.catalog)
        if not has or upto < state.generation:
            why = "was made before lfm-colbert kept a keyword index" if not has else \
                "was written by an older lfm-colbert since its keyword index was last updated"
            raise IndexFormatError(
                f"{self.catalog.path.parent} {why}, so lexical and hybrid search cannot use it yet; build it with "
                f"`lfm-colbert index --index {self.catalog.path.parent} --rebuild-lexical` (or Index.rebuild_lexical() in "
                "Python; any add or delete also builds it). Semantic search works meanwhile.")

    def stats(self, state: Any) -> tuple[int, float, list[str]]:
        """(N, average length, languages) of the live documents with text in `state`."""
        if self._stats is not None and self._stats[0] == state.generation:
            return self._stats[1]
        rows = np.array(self.catalog._query("SELECT slot, len FROM lex_docs"), dtype=np.int64).reshape(-1, 2)
        ok = _alive(state, rows[:, 0])
        n, total = int(ok.sum()), int(rows[ok, 1].sum())
        langs = [r[0] for r in self.catalog._query("SELECT DISTINCT lang FROM lex_docs")]
        out = (n, total / n if n else 0.0, sorted(langs))
        self._stats = (state.generation, out)
        return out

    def rank(self, state: Any, queries: Sequence[str], k: int,
             allowed: Mapping[int, Sequence[int]] | None) -> list[list[tuple[int, float]]]:
        """Top-k (slot, BM25 score) per query; documents with no query term are not returned."""
        self.check(state)
        n, avglen, langs = self.stats(state)
        per_lang = {lang: tokenize(queries, lang) for lang in langs}
        conn = self.catalog._conn()
        out = []
        for qi in range(len(queries)):
            weights = {lang: Counter(per_lang[lang][qi]) for lang in langs}  # repeated query tokens count again
            ids = _term_ids(conn, {t for w in weights.values() for t in w}, create_missing=False)
            if not ids or n == 0:
                out.append([])
                continue
            term_list = list(ids.values())
            rows = []
            for i in range(0, len(term_list), _CHUNK):
                part = term_list[i : i + _CHUNK]
                rows += conn.execute(
                    "SELECT p.term, p.slot, p.tf, d.len, d.lang FROM lex_postings p JOIN lex_docs d ON d.slot = p.slot "
                    f"WHERE p.term IN ({','.join('?' * len(part))})", part).fetchall()
            if not rows:
                out.append([])
                continue
            term = np.array([r[0] for r in rows], dtype=np.int64)
            slot = np.array([r[1] for r in rows], dtype=np.int64)
            tf = np.array([r[2] for r in rows], dtype=np.float64)
            dl = np.array([r[3] for r in rows], dtype=np.float64)
            live = _alive(state, slot)
            name = {v: t for t, v in ids.items()}
            weight = np.array([weights[r[4]].get(name[r[0]], 0) if r[4] in weights else 0 for r in rows], dtype=np.float64)
            uniq, inv = np.unique(term, return_inverse=True)
            df = np.bincount(inv, weights=live.astype(np.float64), minlength=len(uniq))[inv]
            idf = np.log(1.0 + (n - df + 0.5) / (df + 0.5))
            part_score = weight * idf * tf / (tf + K1 * (1 - B + B * dl / avglen))
            keep = live & (weight > 0)
            if allowed is not None:
                keep &= _alive(state, slot, allowed)
            slots, inv2 = np.unique(slot[keep], return_inverse=True)
            scores = np.bincount(inv2, weights=part_score[keep], minlength=len(slots))
            top = np.lexsort((slots, -scores))[:k]
            out.append([(int(slots[j]), float(scores[j])) for j in top])
        return out


def expected_postings(catalog: Any) -> dict[str, tuple[str, int, dict[str, int]]]:
    """{id: (lang, length, {term: tf})} of every live document with text, tokenized afresh."""
    rows = catalog._query("SELECT id, text, metadata FROM docs WHERE removed IS NULL AND text IS NOT NULL")
    docs = [(i, text, doc_lang(text, json.loads(meta))) for i, (_, text, meta) in enumerate(rows)]
    return {rows[i][0]: (lang, len(toks), dict(Counter(toks))) for i, lang, toks in tokenize_docs(docs)}


def stored_postings(catalog: Any) -> dict[str, tuple[str, int, dict[str, int]]]:
    """{id: (lang, length, {term: tf})} of every live document, as the postings tables hold it."""
    out: dict[str, tuple[str, int, dict[str, int]]] = {}
    docs = catalog._query("SELECT d.id, l.slot, l.len, l.lang FROM docs d JOIN lex_docs l "
                          f"ON l.slot = d.segment * {1 << SHIFT} + d.row WHERE d.removed IS NULL")
    terms = dict(catalog._query("SELECT id, term FROM lex_terms"))
    by_slot: dict[int, dict[str, int]] = {}
    for t, slot, tf in catalog._query("SELECT term, slot, tf FROM lex_postings"):
        by_slot.setdefault(slot, {})[terms[t]] = tf
    for doc_id, slot, length, lang in docs:
        out[doc_id] = (lang, length, by_slot.get(slot, {}))
    return out
