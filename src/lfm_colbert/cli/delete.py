"""`lfm-colbert delete DIR IDS...`: remove documents by id."""

from __future__ import annotations

import argparse
import json
from typing import Any

HELP = """\
Delete documents by id. A document that was split into passages is deleted whole by its own id
(the file path or .jsonl id); a single passage by its passage id (ID#N). An unknown id is an
error and nothing is deleted, unless --missing-ok. Storage is compacted automatically once
deleted documents exceed 25% of it. `lfm-colbert index SOURCES --sync` deletes the documents
of files that no longer exist for you.

examples:
  lfm-colbert delete my-index penguins-en coffee-en
  lfm-colbert delete my-index notes/old.md               # every passage of a split document
  lfm-colbert list my-index --filter lang=xx --json | jq -r .id | xargs lfm-colbert delete my-index
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("delete", help="delete documents by id", description=HELP,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("index", metavar="DIR", help="index directory")
    p.add_argument("ids", nargs="+", metavar="ID", help="document or passage ids")
    p.add_argument("--missing-ok", action="store_true", help="ignore ids that are not in the index")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lfm_colbert.stores import open_store

    index = open_store(args.index, create=False, verify=False)
    n = index.delete(args.ids, missing_ok=args.missing_ok)
    if args.json:
        print(json.dumps({"deleted": n, "left": len(index), "index": str(args.index)}, ensure_ascii=False))
    else:
        print(f"deleted {n} document(s); {len(index)} left in {args.index}")
    index.close()
    return 0
