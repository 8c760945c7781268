"""`lfm-colbert copy SRC DST`: move a collection between an index directory and a Qdrant store."""

from __future__ import annotations

import argparse
from typing import Any

HELP = """\
Copy every document (id, text, metadata, parent and its stored token vectors) from one store to
another without encoding anything again: an index directory to a Qdrant collection, back, or
between two of either. DST is created with SRC's model. Documents already in DST under the same
id are left as they are, so an interrupted copy resumes when run again.

stores: an index directory, qdrant+http://HOST:6333/COLLECTION (a server; API key from
$QDRANT_API_KEY), qdrant+edge:DIR (Qdrant's engine in-process), qdrant+path:DIR (qdrant-client's
local mode); add ?dense=1 to a new Qdrant store to give it dense prefetch vectors.

examples:
  lfm-colbert copy my-index qdrant+http://localhost:6333/docs
  lfm-colbert copy qdrant+http://localhost:6333/docs my-index-again
  lfm-colbert copy my-index "qdrant+edge:docs-edge?dense=1"
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("copy", help="copy a collection to another store, without re-encoding", description=HELP,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", metavar="SRC", help="index directory or qdrant+... store to read")
    p.add_argument("target", metavar="DST", help="index directory or qdrant+... store to write (created if missing)")
    p.add_argument("--batch-size", type=int, default=256, metavar="N", help="documents per read and write (default 256)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lfm_colbert.stores import copy_documents

    copied, kept = copy_documents(args.source, args.target, batch_size=args.batch_size,
                                  show_progress=False if args.quiet else None)
    there = f"; {kept} were already there and left as they are" if kept else ""
    print(f"copied {copied} documents from {args.source} to {args.target}{there}")
    return 0
