"""`lfm-colbert list DIR`: the stored documents, in id order, filtered and paged."""

from __future__ import annotations

import argparse
import json
from typing import Any

from lfm_colbert.cli.options import add_filter, add_json, index_filter
from lfm_colbert.index.filter_syntax import SYNTAX

HELP = f"""\
List stored documents (passages of split documents included) in id order: one line each with
the id and the start of the text, or JSON Lines with --json. --keys lists the metadata keys
instead, with how many documents have each: what --filter can use.

{SYNTAX}

examples:
  lfm-colbert list my-index --limit 20
  lfm-colbert list my-index --filter lang=de --json | jq -r .id
  lfm-colbert list my-index --limit 100 --after penguins-en      # the next page
  lfm-colbert list my-index --keys
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("list", help="list documents (with filters, in pages) or metadata keys",
                              description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("index", metavar="DIR", help="index directory")
    add_filter(p)
    p.add_argument("--limit", "-n", type=int, default=None, metavar="N", help="at most N documents (default all)")
    p.add_argument("--after", metavar="ID", default=None, help="start after this id (the last one of the previous page)")
    p.add_argument("--keys", action="store_true", help="list the metadata keys and how many documents have each")
    add_json(p, "one JSON object per line: {id, text, metadata, parent}")
    p.set_defaults(func=run)


def _snippet(text: str | None, width: int = 100) -> str:
    if text is None:
        return "(vectors only)"
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def run(args: argparse.Namespace) -> int:
    from lfm_colbert.errors import InputError
    from lfm_colbert.index import Index

    if args.limit is not None and args.limit < 1:
        raise InputError(f"--limit must be a positive integer, not {args.limit}")
    index = Index(args.index, create=False, verify=False)
    if args.keys:
        keys = index.metadata_keys()
        if args.json:
            print(json.dumps(keys, ensure_ascii=False))
        for key, n in ([] if args.json else sorted(keys.items())):
            print(f"{key}\t{n}")
        index.close()
        return 0
    flt = index_filter(index, args.filter)
    left, after = args.limit, args.after
    while left is None or left > 0:
        page = index.list(filter=flt, limit=min(1000, left or 1000), after=after)
        for doc in page:
            print(json.dumps(doc.to_dict(), ensure_ascii=False) if args.json else f"{doc.id}\t{_snippet(doc.text)}")
        if len(page) < min(1000, left or 1000):
            break
        after = page[-1].id
        left = None if left is None else left - len(page)
    index.close()
    return 0
