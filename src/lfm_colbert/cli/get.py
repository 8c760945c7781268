"""`lfm-colbert get DIR ID...`: stored documents back by id."""

from __future__ import annotations

import argparse
import json
from typing import Any

from lfm_colbert.cli.options import add_json
from lfm_colbert.errors import InputError

HELP = """\
Print stored documents by id: text, metadata and, for a passage, the document it belongs to. A
document that was split into passages is asked for by its own id (the file path or .jsonl id)
and comes back as its passages, in order; one passage by its passage id (ID#N).

examples:
  lfm-colbert get my-index penguins-en
  lfm-colbert get my-index corpus/guides/solar-energy.md --json | jq -r .text
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("get", help="print documents by id", description=HELP,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("index", metavar="DIR", help="index directory")
    p.add_argument("ids", nargs="+", metavar="ID", help="document or passage ids")
    add_json(p, "one JSON object per line: {id, text, metadata, parent}")
    p.set_defaults(func=run)


def passages_of(index: Any, parent: str) -> list[Any]:
    """The passages `parent#N` of a split document, in passage order (ids sort as text: #10 before #2)."""
    found, after = [], parent + "#"
    while page := index.list(limit=1000, after=after):
        mine = [d for d in page if d.id.startswith(parent + "#")]
        found += [d for d in mine if d.parent == parent]
        if len(mine) < len(page):
            break
        after = page[-1].id
    return sorted(found, key=lambda d: (d.metadata.get("passage", 0), d.id))


def print_document(doc: Any, as_json: bool) -> None:
    if as_json:
        print(json.dumps(doc.to_dict(), ensure_ascii=False))
        return
    print(f"id        {doc.id}")
    if doc.parent and doc.parent != doc.id:
        print(f"parent    {doc.parent}")
    print(f"metadata  {json.dumps(doc.metadata, ensure_ascii=False)}")
    print()
    print(doc.text if doc.text is not None else "(no text: added as vectors only)")
    print()


def run(args: argparse.Namespace) -> int:
    from lfm_colbert.index import Index

    index = Index(args.index, create=False, verify=False)
    found, missing = [], []
    for doc_id, doc in zip(args.ids, index.get(list(args.ids))):
        docs = [doc] if doc is not None else passages_of(index, doc_id)
        (found.extend(docs) if docs else missing.append(doc_id))
    if missing:
        shown = ", ".join(repr(m) for m in missing[:5])
        raise InputError(f"{len(missing)} id(s) not in the index: {shown}; `lfm-colbert list {args.index}` shows the ids")
    for doc in found:
        print_document(doc, args.json)
    index.close()
    return 0
