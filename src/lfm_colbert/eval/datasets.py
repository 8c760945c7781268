"""Retrieval datasets: the in-memory form, the BEIR folder layout, and the conversion cache.

A dataset is three dicts, exactly as BEIR lays them out on disk:

    corpus   {doc_id: text}                 (title and text joined by one space)
    queries  {query_id: text}
    qrels    {query_id: {doc_id: grade}}    (grade > 0 means relevant)

`sources.load_dataset(spec)` turns what a user types after `--dataset` into one of these:
a local BEIR folder, a NanoBEIR set, a multilingual NanoBEIR set or a MIRACL pool (see `hub.py`).
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

from lfm_colbert.errors import DatasetError
from lfm_colbert.jsonl import iter_objects


@dataclass
class RetrievalDataset:
    """A corpus, its queries and the relevance judgments (qrels) that link them."""

    name: str
    corpus: dict[str, str]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    lang: str = "en"  # language of the queries
    doc_lang: str | None = None  # language of the documents, when it differs (cross-lingual)
    meta: dict = field(default_factory=dict)

    @property
    def corpus_lang(self) -> str:
        return self.doc_lang or self.lang

    def validate(self) -> "RetrievalDataset":
        """Raise DatasetError unless every judged query and document exists; returns self."""
        where = f"dataset {self.name!r}"
        if not self.corpus:
            raise DatasetError(f"{where}: the corpus is empty")
        if not self.queries:
            raise DatasetError(f"{where}: there are no queries")
        if not self.qrels:
            raise DatasetError(f"{where}: there are no relevance judgments (qrels)")
        unknown_q = [q for q in self.qrels if q not in self.queries]
        if unknown_q:
            raise DatasetError(
                f"{where}: qrels name {len(unknown_q)} queries that are not in the queries "
                f"(e.g. {_examples(unknown_q)})"
            )
        unknown_d = sorted({d for rels in self.qrels.values() for d in rels if d not in self.corpus})
        if unknown_d:
            raise DatasetError(
                f"{where}: qrels name {len(unknown_d)} documents that are not in the corpus "
                f"(e.g. {_examples(unknown_d)})"
            )
        if not any(g > 0 for rels in self.qrels.values() for g in rels.values()):
            raise DatasetError(f"{where}: the qrels judge no document relevant (all grades <= 0)")
        return self

    def judged_queries(self) -> dict[str, str]:
        """The queries that have at least one relevant document: the ones metrics average over."""
        return {q: self.queries[q] for q in self.qrels if any(g > 0 for g in self.qrels[q].values())}

    def subset(self, max_docs: int | None = None, max_queries: int | None = None, seed: int = 0) -> "RetrievalDataset":
        """A smaller copy for quick runs: the first `max_queries` judged queries (seeded sample),
        every document they judge, then seeded random other documents up to `max_docs`.
        Judged documents are always kept, so a subset can exceed `max_docs` only by them."""
        rng = random.Random(seed)
        queries = self.judged_queries()
        if max_queries is not None and max_queries < len(queries):
            keep = sorted(rng.sample(sorted(queries), max_queries), key=list(queries).index)
            queries = {q: queries[q] for q in keep}
        qrels = {q: dict(self.qrels[q]) for q in queries}
        corpus = self.corpus
        if max_docs is not None and max_docs < len(corpus):
            judged = {d for rels in qrels.values() for d in rels}
            others = [d for d in corpus if d not in judged]
            n_extra = max(0, max_docs - len(judged))
            extra = set(rng.sample(others, min(n_extra, len(others))))
            corpus = {d: t for d, t in self.corpus.items() if d in judged or d in extra}
        meta = dict(self.meta, subset={"max_docs": max_docs, "max_queries": max_queries, "seed": seed})
        return RetrievalDataset(self.name, corpus, queries, qrels, self.lang, self.doc_lang, meta)

    def stats(self) -> dict:
        return {"n_docs": len(self.corpus), "n_queries": len(self.judged_queries()), "lang": self.lang}


def _examples(items: list[str], n: int = 3) -> str:
    return ", ".join(repr(x) for x in items[:n])


def doc_text(title: str | None, text: str | None) -> str:
    """BEIR's convention: title and text joined by one space (either may be empty)."""
    return f"{title or ''} {text or ''}".strip()


# ---------------------------------------------------------------------------------------------
# BEIR folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8-sig") as f:  # -sig: a byte-order mark from a Windows editor is dropped
        for i, row in iter_objects(f, str(path), DatasetError):
            if "_id" not in row:
                raise DatasetError(f"{path}, line {i}: expected an object with an '_id' field")
            rows.append(row)
    return rows


def read_qrels_tsv(path: Path) -> dict[str, dict[str, int]]:
    """Read a BEIR qrels file: tab-separated `query-id corpus-id score`, with or without a header."""
    qrels: dict[str, dict[str, int]] = {}
    with open(path, encoding="utf-8-sig") as f:
        for i, line in enumerate(f, 1):
            parts = line.rstrip("\n").split("\t")
            if not line.strip():
                continue
            if i == 1 and parts[0].strip().lower() in {"query-id", "query_id", "qid"}:
                continue  # header
            if len(parts) == 4:  # TREC style: qid 0 docid grade
                parts = [parts[0], parts[2], parts[3]]
            if len(parts) != 3:
                raise DatasetError(f"{path}, line {i}: expected 3 tab-separated fields, got {len(parts)}")
            try:
                grade = int(float(parts[2]))
            except ValueError:
                raise DatasetError(f"{path}, line {i}: score {parts[2]!r} is not a number") from None
            qrels.setdefault(parts[0], {})[parts[1]] = grade
    return qrels


def load_beir_folder(path: str | os.PathLike, split: str = "test", lang: str = "en", name: str | None = None) -> RetrievalDataset:
    """Load a BEIR-layout folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv) and validate it."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder")
    for fname in ("corpus.jsonl", "queries.jsonl"):
        if not (root / fname).is_file():
            raise DatasetError(f"{root}: missing {fname} (a BEIR folder has corpus.jsonl, queries.jsonl and qrels/<split>.tsv)")
    qrels_dir = root / "qrels"
    available = sorted(p.stem for p in qrels_dir.glob("*.tsv")) if qrels_dir.is_dir() else []
    if not available:
        raise DatasetError(f"{root}: missing qrels (expected {qrels_dir / (split + '.tsv')})")
    if split not in available:
        raise DatasetError(f"{root}: no qrels for split {split!r}; available: {', '.join(available)}")

    corpus = {str(r["_id"]): doc_text(r.get("title"), r.get("text")) for r in _read_jsonl(root / "corpus.jsonl")}
    queries = {str(r["_id"]): str(r.get("text") or "") for r in _read_jsonl(root / "queries.jsonl")}
    qrels = read_qrels_tsv(qrels_dir / f"{split}.tsv")
    meta = {"source": "beir-folder", "path": str(root.resolve()), "split": split}
    ds = RetrievalDataset(name or root.name, corpus, queries, qrels, lang=lang, meta=meta)
    ds.validate()
    # Evaluate only the queries the split judges (BEIR folders hold every split's queries).
    ds.queries = {q: ds.queries[q] for q in ds.qrels}
    return ds


def save_beir_folder(ds: RetrievalDataset, path: str | os.PathLike, split: str = "test") -> Path:
    """Write a dataset as a BEIR folder, plus meta.json; used to cache hub downloads as plain files."""
    root = Path(path)
    (root / "qrels").mkdir(parents=True, exist_ok=True)
    tmp = root / ".partial"
    tmp.mkdir(exist_ok=True)
    with open(tmp / "corpus.jsonl", "w", encoding="utf-8") as f:
        for d, text in ds.corpus.items():
            f.write(json.dumps({"_id": d, "title": "", "text": text}, ensure_ascii=False) + "\n")
    with open(tmp / "queries.jsonl", "w", encoding="utf-8") as f:
        for q, text in ds.queries.items():
            f.write(json.dumps({"_id": q, "text": text}, ensure_ascii=False) + "\n")
    with open(tmp / f"{split}.tsv", "w", encoding="utf-8") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for q, rels in ds.qrels.items():
            for d, g in rels.items():
                f.write(f"{q}\t{d}\t{g}\n")
    meta = dict(ds.meta, name=ds.name, lang=ds.lang, doc_lang=ds.doc_lang)
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False), encoding="utf-8")
    # Move into place last, so an interrupted download never leaves a half-written cache entry.
    os.replace(tmp / "corpus.jsonl", root / "corpus.jsonl")
    os.replace(tmp / "queries.jsonl", root / "queries.jsonl")
    os.replace(tmp / f"{split}.tsv", root / "qrels" / f"{split}.tsv")
    os.replace(tmp / "meta.json", root / "meta.json")
    tmp.rmdir()
    return root


def load_cached(path: Path, split: str = "test") -> RetrievalDataset | None:
    """A dataset cached by `save_beir_folder`, or None when that cache entry does not exist."""
    if not (path / "meta.json").is_file():
        return None
    meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
    ds = load_beir_folder(path, split=split, lang=meta.get("lang", "en"), name=meta.get("name"))
    ds.doc_lang = meta.get("doc_lang")
    ds.meta = {k: v for k, v in meta.items() if k not in {"name", "lang", "doc_lang"}}
    ds.meta["cache"] = str(path)
    return ds


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where downloaded datasets are cached: --cache-dir, $LFM_COLBERT_CACHE, or ~/.cache/lfm-colbert."""
    base = cache_dir or os.environ.get("LFM_COLBERT_CACHE") or Path.home() / ".cache" / "lfm-colbert"
    return Path(base).expanduser() / "datasets"


# ---------------------------------------------------------------------------------------------
# Dataset names
