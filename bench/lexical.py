"""Lexical (BM25) side of hybrid search: build time, size and query latency of the keyword index
kept in the catalog, against bm25s run directly on the same texts and tokenizer, one run.

    python bench/lexical.py                  # SciFact (5,183 abstracts) + XQuAD-R sentences (11 languages)
    python bench/lexical.py --queries 100

Corpora from ../shared/data: BEIR SciFact (English) and every XQuAD-R sentence of 11 languages
(ar de el en es hi ru th tr vi zh, each with metadata lang), questions of the same languages as
queries. Documents carry one random 8-d token vector: only the lexical side is measured.
Columns: add = Index.add_vectors wall time (tokenizing + postings + the rest of the commit);
bytes/doc = catalog.sqlite size with the keyword tables minus without them (both VACUUMed), per
document; p50/p95 = Index.search(mode="lexical", k=10) per query; bm25s = bm25s.retrieve of the
same tokenized query on an in-memory index (its own p50), for scale.
Heavy enough to wrap in `flock /tmp/lfm-bench.lock` on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
MODEL = {"model_id": "vectors-only", "variant": "none", "dim": 8, "fingerprint": "bench-lexical"}
XQ_LANGS = ["ar", "de", "el", "en", "es", "hi", "ru", "th", "tr", "vi", "zh"]


def scifact() -> tuple[list[str], list[str], list[dict], list[str], str]:
    from lfm_colbert.eval import load_beir_folder

    ds = load_beir_folder(SHARED / "scifact")
    return list(ds.corpus), list(ds.corpus.values()), [{} for _ in ds.corpus], list(ds.queries.values()), "en"


def xquad() -> tuple[list[str], list[str], list[dict], list[str], str]:
    from lfm_colbert.eval.crosslingual import load_xquad_language

    ids, texts, metas, queries = [], [], [], []
    for lang in XQ_LANGS:
        x = load_xquad_language(SHARED / "xquad-r" / f"{lang}.json")
        for sid, text in x.sentences.items():
            ids.append(f"{lang}:{sid}")
            texts.append(text)
            metas.append({"lang": lang})
        queries += list(x.questions.values())[:40]
    return ids, texts, metas, queries, "mixed"


def _size_without_lexical(catalog: Path) -> tuple[int, int]:
    from lfm_colbert.index import lexical

    with tempfile.TemporaryDirectory() as tmp:
        a, b = Path(tmp) / "a.sqlite", Path(tmp) / "b.sqlite"
        shutil.copy(catalog, a)
        shutil.copy(catalog, b)
        for path, drop in ((a, False), (b, True)):
            conn = sqlite3.connect(path)
            if drop:
                for t in lexical.TABLES:
                    conn.execute(f"DROP TABLE {t}")
            conn.execute("VACUUM")
            conn.close()
        return a.stat().st_size, b.stat().st_size


def measure(name: str, ids, texts, metas, queries, lang: str, n_queries: int) -> dict:
    from lfm_colbert.eval.bm25 import BM25
    from lfm_colbert.index import Index, lexical

    rng = np.random.default_rng(0)
    vecs = [rng.standard_normal((1, 8)).astype(np.float32) for _ in ids]
    queries = queries[:n_queries]
    with tempfile.TemporaryDirectory() as tmp:
        index = Index(Path(tmp) / "idx", MODEL)
        t0 = time.perf_counter()
        index.add_vectors(vecs, ids=ids, texts=texts, metadata=metas)
        add_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        index.rebuild_lexical()
        rebuild_s = time.perf_counter() - t0
        with_lex, without = _size_without_lexical(index.path / "catalog.sqlite")
        index.search(queries[0], mode="lexical")  # warm: tokenizers, stemmers
        lat = []
        for q in queries:
            t0 = time.perf_counter()
            index.search(q, k=10, mode="lexical")
            lat.append(time.perf_counter() - t0)
        n_terms = index.catalog._query("SELECT COUNT(*) FROM lex_terms")[0][0]
        n_postings = index.catalog._query("SELECT COUNT(*) FROM lex_postings")[0][0]
        index.close()
    ref_lat = []
    if lang != "mixed":
        bm = BM25(lang=lang).index(ids, texts)
        from lfm_colbert.eval.bm25 import tokenize

        for q in queries:
            t0 = time.perf_counter()
            bm._retriever.retrieve(tokenize([q], lang), k=10, show_progress=False, n_threads=0)
            ref_lat.append(time.perf_counter() - t0)
    del lexical
    return {
        "corpus": name, "docs": len(ids), "queries": len(queries), "add_s": round(add_s, 2), "rebuild_s": round(rebuild_s, 2),
        "lexical_bytes": with_lex - without, "bytes_per_doc": round((with_lex - without) / len(ids)),
        "catalog_bytes_without": without, "terms": n_terms, "postings": n_postings,
        "p50_ms": round(1000 * float(np.percentile(lat, 50)), 2), "p95_ms": round(1000 * float(np.percentile(lat, 95)), 2),
        "bm25s_p50_ms": round(1000 * float(np.percentile(ref_lat, 50)), 2) if ref_lat else None,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--queries", type=int, default=300, help="queries per corpus (default 300)")
    ap.add_argument("--json", help="also write the rows here")
    args = ap.parse_args()
    if not SHARED.is_dir():
        print(f"needs {SHARED} (the project's ../shared/data)", file=sys.stderr)
        return 2
    print(f"# lexical: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}, "
          f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}")
    rows = [measure("scifact", *scifact(), args.queries), measure("xquad-r x11", *xquad(), args.queries)]
    cols = ["corpus", "docs", "queries", "add_s", "rebuild_s", "bytes_per_doc", "terms", "postings", "p50_ms", "p95_ms", "bm25s_p50_ms"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(str(r[c]) for c in cols) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
