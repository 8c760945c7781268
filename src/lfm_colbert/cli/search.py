"""`lfm-colbert search DIR QUERY...`: the top-k passages (or documents) for each query."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from lfm_colbert.cli.inputs import Item, check_unique, read_queries, shorten
from lfm_colbert.cli.options import add_filter, add_placement, index_filter
from lfm_colbert.errors import InputError
from lfm_colbert.index.filter_syntax import SYNTAX

HELP = f"""\
Search an index built by `lfm-colbert index`. Queries can be in any language the model knows;
documents in other languages are found too. Give queries as arguments, in a file (--queries), or
on standard input ('-' as the query, or --queries -).

query files: one query per line; ID<TAB>query gives it an id (else its line number is its id);
  a line whose first non-blank character is # is a comment, so a query that starts with # needs
  an id; a .jsonl file (or JSON Lines on standard input) holds {{"id", "text"}} per line (BEIR's
  queries.jsonl). Queries given as arguments are numbered 1, 2, ...

--group-by-document collapses the passages of one source document (a long file split by
  `lfm-colbert index`) into one hit: the document's id, its best passage and that passage's score.
--format text (default), json (JSON Lines, one object per query: {{query_id, query, hits}}; the
  same as --json) or trec (a TREC run: QID Q0 DOCID RANK SCORE TAG, for trec_eval, pytrec_eval
  or ranx).

--mode semantic (default: MaxSim over the model's token vectors), lexical (BM25 over the stored
  texts, no model needed) or hybrid (both, fused by reciprocal rank fusion; with --alpha A from 0
  to 1, by A x normalised semantic score + (1 - A) x normalised BM25 score). The filter applies
  to both sides; a hybrid score is the fused score.

{SYNTAX}
  Passage metadata also holds source, passage, start and end (and page for a PDF).

examples:
  lfm-colbert search my-index "where do penguins live?"
  lfm-colbert search my-index "¿dónde viven los pingüinos?" -k 3 --filter lang=en,de
  lfm-colbert search my-index "solar panels" --filter 'year>=2020 AND NOT tags=draft'
  lfm-colbert search my-index --queries examples/queries.txt --json | jq .
  lfm-colbert search my-index --queries queries.tsv --format trec --group-by-document > run.trec
  lfm-colbert search my-index "BRCA1 mutation" --mode hybrid            # names, codes, rare words
  lfm-colbert search my-index "BRCA1 mutation" --mode hybrid --alpha 0.7
  lfm-colbert search my-index "error 0x80070005" --mode lexical
  cat questions.txt | lfm-colbert search my-index - -k 5
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "search", help="search an index", description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("index", metavar="DIR", help="index directory")
    p.add_argument("queries", nargs="*", metavar="QUERY", help="one or more queries ('-': read them from standard input)")
    p.add_argument("--queries", "-Q", dest="queries_file", metavar="FILE",
                   help="read queries from FILE (or '-', standard input); see above for the format")
    p.add_argument("-k", type=int, default=10, help="results per query (default 10)")
    add_filter(p)
    p.add_argument("--mode", choices=["semantic", "lexical", "hybrid"], default="semantic",
                   help="semantic (default), lexical (BM25) or hybrid (both, fused); see above")
    p.add_argument("--alpha", type=float, default=None, metavar="A",
                   help="with --mode hybrid: blend normalised scores, A for semantic and 1-A for lexical "
                        "(default: reciprocal rank fusion)")
    p.add_argument("--group-by-document", action="store_true",
                   help="one hit per source document, with its best passage")
    p.add_argument("--format", choices=["text", "json", "trec"], default=None, help="output format (default text)")
    p.add_argument("--json", action="store_true", help="JSON Lines output, the same as --format json")
    p.add_argument("--run-tag", default="lfm-colbert", metavar="TAG", help="the last column of --format trec")
    p.add_argument("--model", "-m", default=None,
                   help="hub id or local checkpoint (default: $LFM_COLBERT_MODEL, else the index's model); "
                        "checked against the index's model")
    add_placement(p)
    p.set_defaults(func=run)


def _queries(args: argparse.Namespace) -> list[Item]:
    given = list(args.queries)
    if "-" in given and args.queries_file == "-":
        raise InputError("standard input can hold the queries once: give '-' or --queries -, not both")
    queries = [Item(str(n), q) for n, q in enumerate((q for q in given if q != "-"), 1)]
    if "-" in given:
        queries += read_queries("-")
    if args.queries_file:
        queries += read_queries(args.queries_file)
    if not queries:
        raise InputError("give at least one query (or --queries FILE, or '-' to read them from standard input)")
    if any(not q.text.strip() for q in queries):
        raise InputError("a query must be a non-empty string")
    check_unique(queries, "query")
    return queries


def _format(args: argparse.Namespace) -> str:
    if args.json and args.format not in (None, "json"):
        raise InputError(f"--json and --format {args.format} disagree; give one")
    return "json" if args.json else args.format or "text"


def _rows(results: list[Any], grouped: bool) -> list[list[dict[str, Any]]]:
    """Each query's hits as plain dicts: {rank, id, score, text, metadata} (+ passage_id, passages when grouped)."""
    out = []
    for hits in results:
        rows = []
        for rank, h in enumerate(hits, 1):
            if grouped:
                p = h.passage
                rows.append({"rank": rank, "id": h.id, "score": h.score, "passage_id": p.id, "passages": h.passages,
                             "text": p.text, "metadata": p.metadata})
            else:
                rows.append({"rank": rank, **h.to_dict()})
        out.append(rows)
    return out


def print_results(queries: list[Item], rows: list[list[dict[str, Any]]], fmt: str, run_tag: str = "lfm-colbert") -> None:
    """Print ranked rows per query as text, JSON Lines or a TREC run."""
    if fmt == "trec":
        bad = next((r["id"] for hits in rows for r in hits if not r["id"] or any(c.isspace() for c in r["id"])), None)
        bad_q = next((q.id for q in queries if any(c.isspace() for c in q.id)), None)
        if bad is not None or bad_q is not None:
            raise InputError(f"the id {bad if bad is not None else bad_q!r} holds white space, which a TREC run cannot; "
                             "use --format json")
    for q, hits in zip(queries, rows):
        if fmt == "json":
            print(json.dumps({"query_id": q.id, "query": q.text, "hits": hits}, ensure_ascii=False))
            continue
        if fmt == "trec":
            for r in hits:
                print(f"{q.id} Q0 {r['id']} {r['rank']} {r['score']:.6f} {run_tag}")
            continue
        print(f"query {q.id}: {shorten(q.text)}")
        if not hits:
            print("  (no results)")
        for r in hits:
            tags = " ".join(f"{k}={v}" for k, v in r["metadata"].items() if k in ("lang", "topic", "page", "row"))
            more = f" (best of {r['passages']} passages: {r['passage_id']})" if "passages" in r and r["passage_id"] != r["id"] else ""
            print(f"  {r['rank']:2d}. {r['score']:8.3f}  {r['id']}{more}" + (f"  [{tags}]" if tags else ""))
            if r["text"]:
                print(f"      {shorten(r['text'], 160)}")
        print()


def run(args: argparse.Namespace) -> int:
    from lfm_colbert.stores import open_store

    queries = _queries(args)
    fmt = _format(args)
    if args.k <= 0:
        raise InputError(f"-k must be a positive integer, not {args.k}")
    if args.alpha is not None and args.mode != "hybrid":
        raise InputError(f"--alpha weights the two sides of --mode hybrid, not of --mode {args.mode}")
    if args.group_by_document and args.mode != "semantic":
        raise InputError("--group-by-document works with --mode semantic only")
    index = open_store(args.index, args.model, create=False, backend=args.backend, device=args.device)
    filters = index_filter(index, args.filter)
    texts = [q.text for q in queries]
    if args.group_by_document:
        from lfm_colbert.grouping import search_documents

        results = search_documents(index, texts, k=args.k, filter=filters)
    else:
        results = index.search(texts, k=args.k, filter=filters, mode=args.mode, alpha=args.alpha)
    rows = _rows(results, args.group_by_document)
    if filters is not None and any(not hits for hits in rows) and not index.list(filter=filters, limit=1):
        print("note: no document matches the filter (`lfm-colbert list DIR --keys` shows the metadata keys)", file=sys.stderr)
    print_results(queries, rows, fmt, args.run_tag)
    sys.stdout.flush()
    index.close()
    return 0
