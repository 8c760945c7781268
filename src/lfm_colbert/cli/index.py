"""`lfm-colbert index SOURCES... --index DIR`: build or update an index from files and folders."""

from __future__ import annotations

import argparse
import sys
from typing import Any, Iterator

from lfm_colbert.cli.options import add_placement
from lfm_colbert.errors import InputError
from lfm_colbert.scale import add_ray_options

HELP = """\
Index .txt, .md and .jsonl files (and folders of them, searched recursively) into DIR.

DIR is created on first use and updated afterwards: a document indexed again replaces its
previous version (same id), so re-running the command after editing files is safe, and only
documents whose text or metadata changed are encoded again (--force encodes them all). Work is
saved every --commit-every passages, so an interrupted run continues where it stopped. Long
documents are split into overlapping passages that fit the model's document length; each
passage keeps its source file and character offsets as metadata.

ids:  a file's path as given (folder/relative/path); a .jsonl line's "id" (or "_id") field.
.jsonl lines: {"id": ..., "text": ..., "title": optional, "metadata": {...}}; any other field
      (e.g. "lang") is metadata too, usable with `lfm-colbert search --filter lang=en`.

storage: exact search over float16 vectors by default (256 bytes per token, best for up to
      ~100k passages); --compress 2 or 4 builds a PLAID-style compressed index (34 or 66 bytes
      per token) for larger collections; adding --rescore also keeps the float16 vectors on disk
      (290 or 322 bytes per token) and scores the final candidates on them: compressed speed,
      exact scores. A compressed index stays exact until it holds --train-tokens tokens
      (default 262,144), then fits its codec to all of them and compresses them, so a collection
      built up a few files at a time is compressed as well as one indexed at once. These
      choices are fixed when DIR is created.

examples:
  lfm-colbert index examples/corpus --index my-index
  lfm-colbert index notes/ faq.jsonl --index my-index --model ./LFM2.5-ColBERT-350M
  lfm-colbert index big.jsonl --index big-index --compress 2
  lfm-colbert index big.jsonl --index big-index --compress 2 --rescore
  lfm-colbert index big.jsonl --index big-index --device cpu       # keep the GPU free
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "index", help="index files and folders into an index directory", description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("sources", nargs="+", metavar="SOURCE", help=".txt / .md / .jsonl files or folders")
    p.add_argument("--index", "-i", required=True, metavar="DIR", help="index directory (created if missing)")
    p.add_argument("--model", "-m", default=None,
                   help="hub id or local checkpoint (default: the index's model, else $LFM_COLBERT_MODEL "
                        "or LiquidAI/LFM2.5-ColBERT-350M)")
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
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    add_ray_options(p)
    p.set_defaults(func=run)


def _commits(passages: list[Any], size: int) -> Iterator[list[Any]]:
    """Runs of about `size` passages, never splitting one document's passages (they replace together)."""
    chunk: list[Any] = []
    for p in passages:
        if len(chunk) >= size and p.parent != chunk[-1].parent:
            yield chunk
            chunk = []
        chunk.append(p)
    if chunk:
        yield chunk


def run(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from lfm_colbert.ingest import passage_budget, read_documents, split_passages
    from lfm_colbert.scale.ray import feed_with_ray
    from lfm_colbert.stores import open_store

    for flag, value in (("--commit-every", args.commit_every), ("--batch-size", args.batch_size), ("--max-tokens", args.max_tokens)):
        if value is not None and value < 1:
            raise InputError(f"{flag} must be a positive integer, not {value}")

    docs = list(read_documents(args.sources))
    if not docs:
        print(f"nothing to index in {' '.join(args.sources)}", file=sys.stderr)
        return 1
    index = open_store(args.index, args.model, compress=args.compress, rescore=args.rescore, train_tokens=args.train_tokens,
                  backend=args.backend, device=args.device)
    model = index.model
    budget = passage_budget(model)
    if args.max_tokens is not None and args.max_tokens > budget:
        # Longer passages would be cut at document_length when encoded: their ends silently unsearchable.
        raise InputError(f"--max-tokens {args.max_tokens} is more than a document of this model holds ({budget} tokens)")
    budget = args.max_tokens or budget
    passages = list(split_passages(docs, budget, min(args.overlap, budget // 2), tokenizer=model.tokenizer))
    same = set() if args.force else index.unchanged(
        [p.id for p in passages], [p.text for p in passages], [p.metadata for p in passages], [p.parent for p in passages]
    )
    todo = [p for p in passages if p.id not in same]
    index = feed_with_ray(index, todo, args)  # --ray: the same commits, encoded on a Ray cluster
    bar = tqdm(total=len(todo), desc="encoding", unit="passage", disable=True if args.quiet else None)
    done = 0
    try:
        with index.bulk():  # a new compressed index fits its codec to the whole run, at its end
            for chunk in _commits(todo, args.commit_every):  # each one atomic; unchanged-skipping resumes
                index.add(
                    [p.text for p in chunk],
                    ids=[p.id for p in chunk],
                    metadata=[p.metadata for p in chunk],
                    parents=[p.parent for p in chunk],
                    upsert=True,
                    batch_size=args.batch_size,
                    progress_bar=bar,
                )
                done += len(chunk)
    except KeyboardInterrupt:
        bar.close()
        print(f"interrupted: {done} of {len(todo)} passages were saved; run the same command again to "
              "index the rest", file=sys.stderr)
        return 130
    bar.close()
    info = index.info()
    st = info["storage"]
    kind = f"{st['nbits']}-bit compressed" if st.get("nbits") else "exact"
    kind += ", rescored on float16" if st.get("rescore") else ""
    if st.get("nbits") and not info["n_centroids"]:
        kind += f", exact until it holds {info['train_tokens']:,} tokens"
    n_changed = len({p.parent for p in todo})
    skipped = f"; {len(docs) - n_changed} unchanged documents skipped" if same else ""
    print(
        f"indexed {len(todo)} passages from {n_changed} documents into {args.index}{skipped} "
        f"({kind}; {info['documents']} passages, {info['tokens']} tokens in total)"
    )
    index.close()
    return 0
