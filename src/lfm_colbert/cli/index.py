"""`lfm-colbert index SOURCES... --index DIR`: build an index from files and folders, and keep it in step."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

from lfm_colbert.cli.options import add_placement
from lfm_colbert.errors import InputError
from lfm_colbert.scale import add_ray_options

HELP = """\
Index files and folders (searched recursively) into DIR: .txt, .md, .jsonl, and with their
extras .html / .htm (pip install 'lfm-colbert[html]'), .pdf ([pdf]), .csv / .tsv and .parquet
([parquet] for Parquet).

DIR is created on first use and kept in step afterwards: running the command again encodes only
what changed (a document with the same text, metadata and passages is skipped; a passage whose
text is stored already is copied, not encoded, so a metadata edit costs nothing), and says how
many indexed documents of these sources are no longer in them; --sync deletes those. Work is
saved every --commit-every passages, so an interrupted run continues where it stopped. Long
documents are split into overlapping passages that fit the model's document length; each keeps
its source file and character offsets (start, end; page for a PDF) as metadata.

ids:  do not depend on how a path is spelled. A file in a folder given as SOURCE is
      FOLDER/relative/path, FOLDER being the folder's own name (corpus, ./corpus and
      /abs/corpus all give corpus/guides/a.md); a file given directly is its file name. That is
      also its `source` metadata (two different folders of the same name share ids: index
      them into separate indexes, or give their parent folder). A .jsonl line or table row takes its "id" (or "_id", or
      --id-column), else SOURCE:HASH, a hash of its text, so inserting a line changes no other
      document. An index built before this scheme is recognised: its documents for these files
      are reported, their vectors reused, and --sync deletes them.
.jsonl lines: {"id": ..., "text": ..., "title": optional, "metadata": {...}}; any other field
      (e.g. "lang") is metadata too, usable with `lfm-colbert search --filter lang=en`.
tables: one document per row; --text-column (default "text"; several are joined), --id-column
      (default "id" or "_id" when present), --metadata-columns (default: all the others).
      CSV columns of numbers become numbers; every row keeps `row` (1 = first after the header).

storage: exact search over float16 vectors by default (256 bytes per token, best for up to
      ~100k passages); --compress 2 or 4 builds a PLAID-style compressed index (34 or 66 bytes
      per token) for larger collections; adding --rescore also keeps the float16 vectors on disk
      (290 or 322 bytes per token) and scores the final candidates on them: compressed speed,
      exact scores. A compressed index stays exact until it holds --train-tokens tokens
      (default 262,144), then fits its codec to all of them and compresses them, so a collection
      built up a few files at a time is compressed as well as one indexed at once.
      --pool-factor 2 or 3 clusters each passage's token vectors and keeps the cluster means
      (PyLate's token pooling): an index about 2x or 3x smaller, at a small cost in recall.
      These choices are fixed when DIR is created.

examples:
  lfm-colbert index examples/corpus --index my-index
  lfm-colbert index notes/ faq.jsonl --index my-index --sync      # also drop what was deleted
  lfm-colbert index papers/ --index my-index --model ./LFM2.5-ColBERT-350M
  lfm-colbert index site/ manuals/*.pdf --index docs-index --pool-factor 2
  lfm-colbert index products.csv --index shop --text-column name,description --id-column sku
  lfm-colbert index big.jsonl --index big-index --compress 2 --rescore
  lfm-colbert index big.jsonl --index big-index --device cpu       # keep the GPU free
  lfm-colbert index --index old-index --rebuild-lexical            # keyword index for hybrid search
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "index", help="index files and folders into an index directory", description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("sources", nargs="*", metavar="SOURCE", help="files or folders (see above for the formats)")
    p.add_argument("--index", "-i", required=True, metavar="DIR", help="index directory (created if missing)")
    p.add_argument("--model", "-m", default=None,
                   help="hub id or local checkpoint (default: $LFM_COLBERT_MODEL, else the index's model, "
                        "else LiquidAI/LFM2.5-ColBERT-350M); checked against an existing index's model")
    p.add_argument("--compress", type=int, choices=(2, 4), default=None,
                   help="new index only: store 2- or 4-bit PLAID residuals instead of float16 vectors")
    p.add_argument("--rescore", action="store_true",
                   help="new compressed index only: keep float16 vectors too and rank the final candidates on them")
    p.add_argument("--train-tokens", type=int, default=None, metavar="N",
                   help="new compressed index only: stay exact until the index holds N tokens, then train "
                        "the codec on all of them (default 262144)")
    p.add_argument("--max-tokens", type=int, default=None,
                   help="passage length in tokens, at most what fits the model's document_length (the default)")
    p.add_argument("--overlap", type=int, default=64, help="tokens shared by consecutive passages (default 64)")
    p.add_argument("--batch-size", type=int, default=32, help="documents per forward pass (default 32)")
    add_placement(p)
    p.add_argument("--force", action="store_true", help="encode every document again, even unchanged ones")
    p.add_argument("--commit-every", type=int, default=512, metavar="N",
                   help="save the work every N passages (whole documents; default 512)")
    p.add_argument("--sync", action="store_true",
                   help="delete indexed documents of these sources that are no longer in them")
    p.add_argument("--pool-factor", type=int, choices=(1, 2, 3, 4), default=None, metavar="N",
                   help="new index only: pool each passage's token vectors by N (2 or 3; needs scipy, "
                        "pip install 'lfm-colbert[pool]')")
    p.add_argument("--text-column", default=None, metavar="C[,C...]", help="tables: the column(s) holding the text")
    p.add_argument("--id-column", default=None, metavar="C", help="tables: the column holding each row's id")
    p.add_argument("--metadata-columns", default=None, metavar="C[,C...]",
                   help="tables: the columns kept as metadata (default all others; '' for none)")
    p.add_argument("--rebuild-lexical", action="store_true",
                   help="build DIR's keyword index (lexical and hybrid search) again from its stored texts; "
                        "no SOURCE needed")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    add_ray_options(p)
    p.set_defaults(func=run)


def _columns(value: str | None) -> list[str] | None:
    return None if value is None else [c.strip() for c in value.split(",") if c.strip()]


def _check_document(doc: Any) -> None:
    """A document's id, text and metadata as the index will check them, named by where they came from."""
    from lfm_colbert.index.checks import check_id, check_text, clean_metadata

    where = doc.metadata.get("source", doc.id)
    if doc.metadata.get("line"):
        where = f"{where}, line {doc.metadata['line']}"
    try:
        check_id(doc.id)
        check_text(doc.text, "the text")
        clean_metadata(doc.metadata, doc.id)
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None


def run(args: argparse.Namespace) -> int:
    from lfm_colbert.ingest import TableColumns
    from lfm_colbert.scale.ray import feed_with_ray
    from lfm_colbert.stores import open_store
    from lfm_colbert.sync import SyncReport, read_sources, update_index

    if args.rebuild_lexical and args.sources:
        raise InputError("--rebuild-lexical rebuilds an index's keyword index from its stored texts: give no SOURCE "
                         "(any write with sources keeps the keyword index in step by itself)")
    if args.rebuild_lexical:
        from lfm_colbert.index import Index

        index = Index(args.index, create=False)
        n = index.rebuild_lexical()
        index.close()
        print(f"rebuilt the keyword index of {args.index} from {n} stored texts", file=sys.stderr)
        return 0
    if not args.sources:
        raise InputError("give at least one SOURCE (a file or folder), or --rebuild-lexical")
    for flag, value in (("--commit-every", args.commit_every), ("--batch-size", args.batch_size), ("--max-tokens", args.max_tokens)):
        if value is not None and value < 1:
            raise InputError(f"{flag} must be a positive integer, not {value}")
    if args.overlap < 0:
        raise InputError(f"--overlap must be 0 or more tokens, not {args.overlap}")
    columns = TableColumns(args.id_column, _columns(args.text_column), _columns(args.metadata_columns))
    sources = read_sources(args.sources, columns)
    if not sources.documents and not (args.sync and Path(args.index).is_dir()):
        print(f"nothing to index in {' '.join(args.sources)}", file=sys.stderr)
        return 1
    for doc in sources.documents:  # what the index would refuse, refused before it is created or anything is encoded
        _check_document(doc)
    if getattr(args, "shards", None) and not getattr(args, "ray", None):
        raise InputError("--shards needs --ray (the shards are written by the Ray actors)")
    index = open_store(args.index, args.model, compress=args.compress, rescore=args.rescore, train_tokens=args.train_tokens,
                       backend=args.backend, device=args.device)
    report = SyncReport()
    try:
        update_index(index, sources, sync=args.sync, force=args.force, max_tokens=args.max_tokens, overlap=args.overlap,
                     batch_size=args.batch_size, commit_every=args.commit_every, pool_factor=args.pool_factor,
                     progress=False if args.quiet else None, report=report,
                     feed=(lambda fresh: feed_with_ray(index, fresh, args)) if getattr(args, "ray", None) else None)
    except BaseException as exc:
        if not report.saved:  # nothing was written: a new index this run created goes again, leaving no debris
            with contextlib.suppress(Exception):
                index._discard_created()
        if isinstance(exc, KeyboardInterrupt) and report.saved:
            print(f"interrupted: {report.saved} of {report.to_write} passages were saved; run the same command again to "
                  "index the rest", file=sys.stderr)
            return 130
        raise
    info = index.info()
    if args.json:
        print(json.dumps({"index": str(args.index), "documents_read": report.documents, "passages_written": report.saved,
                          "encoded": report.encoded, "reused": report.reused, "changed_documents": report.changed_documents,
                          "unchanged_documents": report.unchanged, "vanished": report.vanished, "legacy": report.legacy,
                          "removed": report.removed, "total_passages": info["documents"], "total_tokens": info["tokens"]},
                         ensure_ascii=False))
        index.close()
        return 0
    st = info["storage"]
    kind = f"{st['nbits']}-bit compressed" if st.get("nbits") else "exact"
    kind += ", rescored on float16" if st.get("rescore") else ""
    if st.get("nbits") and not info["n_centroids"]:
        kind += f", exact until it holds {info['train_tokens']:,} tokens"
    if index.manifest.get("pool_factor"):
        kind += f", tokens pooled by {index.manifest['pool_factor']}"
    skipped = f"; {report.unchanged} unchanged documents skipped" if report.unchanged else ""
    copied = f" ({report.reused} of them copied from stored vectors, not encoded)" if report.reused else ""
    print(
        f"indexed {report.saved} passages{copied} from {report.changed_documents} documents into {args.index}{skipped} "
        f"({kind}; {info['documents']} passages, {info['tokens']} tokens in total)"
    )
    _say_what_is_gone(report, args.sync)
    index.close()
    return 0


def _say_what_is_gone(report: Any, synced: bool) -> None:
    def some(ids: list[str]) -> str:
        return ", ".join(repr(i) for i in ids[:3]) + (", ..." if len(ids) > 3 else "")

    if synced and report.removed:
        print(f"removed {report.removed} documents no longer in the sources"
              + (f" or indexed under the ids of an earlier version ({some(report.legacy)})" if report.legacy else ""))
        return
    if report.vanished:
        print(f"{len(report.vanished)} indexed documents are no longer in the sources ({some(report.vanished)}); "
              "--sync deletes them")
    if report.legacy:
        print(f"{len(report.legacy)} indexed documents are these files under the ids an earlier version gave them "
              f"(the path as typed: {some(report.legacy)}); their vectors were reused for the new ids, and --sync "
              "deletes the old ones")
