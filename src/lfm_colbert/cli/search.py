"""`lfm-colbert search DIR QUERY...`: the top-k passages for each query."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from lfm_colbert.cli.options import add_placement
from lfm_colbert.errors import InputError
from lfm_colbert.textfile import read_text

HELP = """\
Search an index built by `lfm-colbert index`. Queries can be in any language the model knows;
documents in other languages are found too.

--filter KEY=VALUE keeps documents whose metadata KEY equals VALUE (VALUE may be a comma
separated list meaning any of them; numbers and true/false also match as such). A KEY whose
metadata is a list, such as "tags": ["bird", "cold"], matches when any element does. Repeat
the option to require several keys. Passage metadata includes source, passage, start and end.

examples:
  lfm-colbert search my-index "where do penguins live?"
  lfm-colbert search my-index "¿dónde viven los pingüinos?" -k 3 --filter lang=en,de
  lfm-colbert search my-index --queries examples/queries.txt --json | jq .
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "search", help="search an index", description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("index", metavar="DIR", help="index directory")
    p.add_argument("queries", nargs="*", metavar="QUERY", help="one or more queries")
    p.add_argument("--queries", "-Q", dest="queries_file", metavar="FILE", help="read queries from FILE, one per line")
    p.add_argument("-k", type=int, default=10, help="results per query (default 10)")
    p.add_argument("--filter", "-f", action="append", default=[], metavar="KEY=VALUE", help="metadata filter (repeatable)")
    p.add_argument("--json", action="store_true", help="JSON Lines output: {query, hits: [{rank, id, score, text, metadata}]}")
    p.add_argument("--model", "-m", default=None, help="hub id or local checkpoint (default: the index's model)")
    add_placement(p)
    p.set_defaults(func=run)


def parse_filters(items: list[str]) -> dict[str, Any] | None:
    """["lang=en,es", "year=2020"] -> {"lang": ["en", "es"], "year": ["2020", 2020]}."""
    if not items:
        return None
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"bad --filter {item!r}: use KEY=VALUE")
        values: list[Any] = []
        for v in value.split(","):
            values.append(v)
            try:
                parsed = json.loads(v)
            except json.JSONDecodeError:
                continue
            if isinstance(parsed, (int, float, bool)) and parsed not in values:
                values.append(parsed)
        out.setdefault(key.strip(), []).extend(values)
    return out


def _snippet(text: str | None, width: int = 160) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"


def run(args: argparse.Namespace) -> int:
    from lfm_colbert.stores import open_store

    queries = list(args.queries)
    if args.queries_file:
        lines = read_text(args.queries_file).splitlines()
        queries += [q.strip() for q in lines if q.strip() and not q.lstrip().startswith("#")]
    if not queries:
        raise InputError("give at least one query (or --queries FILE)")
    if args.k <= 0:
        raise InputError(f"-k must be a positive integer, not {args.k}")
    filters = parse_filters(args.filter)
    index = open_store(args.index, args.model, create=False, backend=args.backend, device=args.device)
    results = index.search(queries, k=args.k, filter=filters)
    for q, hits in zip(queries, results):
        if args.json:
            rows = [{"rank": r, **h.to_dict()} for r, h in enumerate(hits, 1)]
            print(json.dumps({"query": q, "hits": rows}, ensure_ascii=False))
            continue
        print(f"query: {q}")
        if not hits:
            print("  (no results)")
        for r, h in enumerate(hits, 1):
            tags = " ".join(f"{k}={v}" for k, v in h.metadata.items() if k in ("lang", "topic"))
            print(f"  {r:2d}. {h.score:8.3f}  {h.id}" + (f"  [{tags}]" if tags else ""))
            if h.text:
                print(f"      {_snippet(h.text)}")
        print()
    sys.stdout.flush()
    index.close()
    return 0
