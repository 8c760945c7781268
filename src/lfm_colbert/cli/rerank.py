"""`lfm-colbert rerank QUERY FILE|-`: order given documents by MaxSim against a query, with no index."""

from __future__ import annotations

import argparse
from typing import Any

from lfm_colbert.cli.inputs import Item, check_unique, read_documents_to_rerank, read_input
from lfm_colbert.cli.options import add_placement
from lfm_colbert.errors import InputError

HELP = """\
Score documents against one query with the model (MaxSim over their token vectors) and print
them best first: a second stage after BM25 or any first-stage retriever, with no index.

documents: FILE holds one document per non-blank line (its id is its line number), or, as .jsonl
  (or JSON Lines on standard input), {"id", "text", optional "title"} per line. '-' reads
  standard input. QUERY '-' reads the query from standard input instead (then FILE is a file).

examples:
  lfm-colbert rerank "where do penguins live?" candidates.txt -k 5
  bm25-search "solar power" | lfm-colbert rerank "solar power" - --json
  lfm-colbert rerank "¿qué es un volcán?" hits.jsonl --format trec --query-id q7 >> run.trec
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("rerank", help="rerank documents against a query (no index)", description=HELP,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("query", metavar="QUERY", help="the query ('-': read it from standard input)")
    p.add_argument("documents", metavar="FILE", help="documents, one per line or .jsonl ('-': standard input)")
    p.add_argument("-k", type=int, default=None, help="print only the best k (default all)")
    p.add_argument("--format", choices=["text", "json", "trec"], default=None, help="output format (default text)")
    p.add_argument("--json", action="store_true", help="JSON Lines output, the same as --format json")
    p.add_argument("--query-id", default="1", metavar="ID", help="the query's id in json and trec output (default 1)")
    p.add_argument("--run-tag", default="lfm-colbert", metavar="TAG", help="the last column of --format trec")
    p.add_argument("--model", "-m", default=None,
                   help="hub id or local checkpoint (default: $LFM_COLBERT_MODEL, else LiquidAI/LFM2.5-ColBERT-350M)")
    p.add_argument("--batch-size", type=int, default=32, help="documents per forward pass (default 32)")
    add_placement(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lfm_colbert.cli.search import _format, print_results
    from lfm_colbert.encoder import ColBERT
    from lfm_colbert.index import rerank

    if args.query == "-" and args.documents == "-":
        raise InputError("standard input can hold the query or the documents, not both")
    if args.k is not None and args.k < 1:
        raise InputError(f"-k must be a positive integer, not {args.k}")
    if args.batch_size < 1:
        raise InputError(f"--batch-size must be a positive integer, not {args.batch_size}")
    fmt = _format(args)
    query = read_input("-")[0].strip() if args.query == "-" else args.query
    if not query.strip():
        raise InputError("the query is empty")
    docs = read_documents_to_rerank(args.documents)
    if not docs:
        raise InputError(f"no documents in {'standard input' if args.documents == '-' else args.documents}")
    check_unique(docs, "document")
    model = ColBERT(args.model, backend=args.backend, device=args.device)
    ranked = rerank(query, [d.text for d in docs], model=model, k=args.k, batch_size=args.batch_size)
    rows = [{"rank": r, "id": docs[x.index].id, "score": x.score, "text": x.text, "metadata": {}}
            for r, x in enumerate(ranked, 1)]
    print_results([Item(args.query_id, query)], [rows], fmt, args.run_tag)
    return 0
