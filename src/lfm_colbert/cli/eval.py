"""`lfm-colbert eval`: NDCG@10 / Recall@10 tables, retention across precisions, BM25 baseline,
cross-lingual matrices."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from functools import partial
from pathlib import Path

from lfm_colbert.cli.options import add_placement
from lfm_colbert.errors import InputError, StorageError
from lfm_colbert.index.store import fsync_dir

EPILOG = """\
{datasets}

examples:
  # BM25 baseline on a local BEIR folder
  lfm-colbert eval --model bm25 --dataset ../shared/data/scifact

  # a checkpoint and BM25 in one table, written to results/ (results.json, table.md, retention.png)
  lfm-colbert eval --model LiquidAI/LFM2.5-ColBERT-350M --model bm25 \\
      --dataset nano:scifact,nano:nfcorpus --output results/

  # the MLX build's retention table: 4 precisions on NanoBEIR sets and MIRACL es/de/ja/ar pools
  lfm-colbert eval --model LiquidAI/LFM2.5-ColBERT-350M --precision bf16,8bit,4bit,mxfp4 \\
      --dataset nano:scifact,nano:nfcorpus,nano:fiqa2018,nano:arguana,miracl --output results/

  # a quick run on part of a big corpus (keeps every judged document)
  lfm-colbert eval --model ./my-checkpoint --dataset ../shared/data/scifact --max-docs 1000

  # hybrid search (BM25 fused with the model by reciprocal rank fusion, as `search --mode hybrid`)
  # beside the model itself: --hybrid adds a bm25+MODEL row per model (or name it: --model bm25+M)
  lfm-colbert eval --model LiquidAI/LFM2.5-ColBERT-350M --hybrid --dataset nano:scifact

  # cross-lingual: XQuAD-R questions in one language against sentences in another
  lfm-colbert eval --model bm25 --crosslingual xquad-r --langs en,es,de,zh --output xl/

notes:
  Search is exact brute-force MaxSim (as the MLX build measured); --search index uses the
  compressed index instead. --precision converts the checkpoint once per precision into
  --cache-dir and evaluates each conversion on the identical datasets; retention is each
  metric divided by the bf16 run's (or the first precision's when bf16 is not listed).
  Hub datasets are downloaded once with the `datasets` library and cached as BEIR folders.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    from lfm_colbert.eval.sources import DATASET_HELP

    p = subparsers.add_parser(
        "eval",
        help="evaluate checkpoints (or BM25): NDCG@10, Recall@10, retention across precisions",
        description=(
            "Evaluate retrieval quality: NDCG@k and Recall@k per dataset, their mean, retention per\n"
            "precision and model size, as a markdown table; with --output also results.json, table.md\n"
            "and a retention plot (PNG)."
        ),
        epilog=EPILOG.format(datasets=DATASET_HELP),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", action="append", required=True, metavar="M",
                   help="checkpoint (hub id or folder) or 'bm25'; repeat for several")
    p.add_argument("--dataset", action="append", default=[], metavar="D",
                   help="dataset (see below); repeat or comma-separate for several")
    p.add_argument("--precision", default=None, metavar="P[,P...]",
                   help="convert and evaluate at these precisions: bf16, 8bit, 4bit, mxfp4 "
                        "(default: the checkpoint as it is)")
    p.add_argument("--output", metavar="DIR", help="write results.json, table.md and retention.png here")
    p.add_argument("-k", "--k", type=int, default=10, help="metric cut-off (default 10)")
    p.add_argument("--split", default="test", help="qrels split of a local BEIR folder (default test)")
    p.add_argument("--lang", default="en", help="language of a local BEIR folder, for BM25's tokenizer (default en)")
    p.add_argument("--max-docs", type=int, metavar="N",
                   help="evaluate on at most N documents: every judged one plus a seeded sample of the rest")
    p.add_argument("--max-queries", type=int, metavar="N",
                   help="evaluate a seeded sample of N judged queries; with --crosslingual, the first N "
                        "aligned items (Tatoeba lines, XQuAD-R questions with their paragraphs)")
    p.add_argument("--seed", type=int, default=0, help="seed for MIRACL pools and --max-docs/--max-queries (default 0)")
    p.add_argument("--hybrid", action="store_true",
                   help="also evaluate each model fused with BM25 (rows bm25+MODEL, as `search --mode hybrid`)")
    p.add_argument("--search", choices=["brute", "index"], default="brute",
                   help="brute: exact MaxSim over all documents (default); index: the compressed index")
    p.add_argument("--query-expansion", action=argparse.BooleanOptionalAction, default=None,
                   help="pad queries to the full query length with expansion tokens that also score (default: the checkpoint's setting)")
    p.add_argument("--batch-size", type=int, default=32, help="encoding batch size (default 32)")
    add_placement(p)
    p.add_argument("--cache-dir", default=None,
                   help="where downloads and conversions are cached (default ~/.cache/lfm-colbert)")
    p.add_argument("--crosslingual", metavar="SET",
                   help="also report a language x language matrix: xquad-r, tatoeba, or a folder of either")
    p.add_argument("--langs", metavar="L[,L...]", help="languages of the cross-lingual matrix (default: all in the set)")
    p.add_argument("--data-dir", default=None,
                   help="folder holding xquad-r/ and tatoeba-laser/ (default $LFM_COLBERT_DATA or ../shared/data)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars (never shown when not on a terminal)")
    p.set_defaults(func=run)


def _split_list(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def run(args: argparse.Namespace) -> int:
    from lfm_colbert.eval.crosslingual import crosslingual_pairs
    from lfm_colbert.eval.sources import expand_specs, load_dataset
    from lfm_colbert.eval.report import markdown_table, write_report
    from lfm_colbert.eval.runner import PRECISIONS, run_evaluation

    if not args.dataset and not args.crosslingual:
        raise InputError("nothing to evaluate: give --dataset and/or --crosslingual (see lfm-colbert eval --help)")
    if args.k < 1:
        raise InputError("--k must be at least 1")
    for flag, value in (("--max-docs", args.max_docs), ("--max-queries", args.max_queries)):
        if value is not None and value < 1:  # 0 used to mean "everything", silently
            raise InputError(f"{flag} must be a positive integer, not {value} (leave it out to use everything)")
    if args.output:
        _check_writable(Path(args.output))  # before the evaluation runs, not after
    precisions = _split_list(args.precision)
    bad = [p for p in precisions if p not in PRECISIONS]
    if bad:
        raise InputError(f"unknown precision {', '.join(bad)}; use {', '.join(PRECISIONS)}")

    datasets = []
    for spec in expand_specs(args.dataset):
        ds = load_dataset(spec, split=args.split, lang=args.lang, cache_dir=args.cache_dir, seed=args.seed)
        if args.max_docs or args.max_queries:
            ds = ds.subset(args.max_docs, args.max_queries, seed=args.seed)
        datasets.append(ds)
    names = [d.name for d in datasets]
    if len(set(names)) != len(names):
        raise InputError(f"the same dataset is named twice: {', '.join(names)}")
    xl = None
    if args.crosslingual:
        xl = crosslingual_pairs(args.crosslingual, _split_list(args.langs) or None, args.data_dir, limit=args.max_queries)

    models = list(args.model)
    if args.hybrid:  # a bm25+M row right after each model M
        models = [m2 for m in models for m2 in ([m] if m.lower() == "bm25" or m.lower().startswith("bm25+") else [m, "bm25+" + m])]
    loader = partial(_load, args=args)
    settings = {
        "search": args.search, "query_expansion": args.query_expansion, "precisions": precisions or None,
        "max_docs": args.max_docs, "max_queries": args.max_queries, "seed": args.seed, "backend": args.backend,
    }
    results = run_evaluation(models, datasets, precisions=precisions or None, k=args.k,
                             crosslingual=xl, loader=loader, settings=settings)
    print(markdown_table(results))
    sys.stdout.flush()  # the table is out before anything can go wrong writing the files
    if args.output:
        paths = _write_atomically(results, Path(args.output), write_report)
        print("wrote " + ", ".join(str(p) for p in paths.values()), file=sys.stderr)
    return 0


def _check_writable(out: Path) -> None:
    """Create the output folder and write a file there, or stop with the reason."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".lfm-colbert-write-check-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise StorageError(f"cannot write to --output {out}: {exc.strerror or exc}") from None


def _write_atomically(results: dict, out: Path, write_report) -> dict:
    """Write the report into a temporary folder beside its files, then move each file into place: a
    failure leaves the previous files as they were, and no half-written one."""
    tmp = Path(tempfile.mkdtemp(prefix=".lfm-colbert-report-", dir=out))
    try:
        written = write_report(results, tmp)
        final = {}
        for key, path in written.items():
            with open(path, "rb+") as f:  # on disk before the name points at it
                os.fsync(f.fileno())
            os.replace(path, out / Path(path).name)
            final[key] = out / Path(path).name
        fsync_dir(out)
        return final
    except OSError as exc:
        raise StorageError(f"cannot write the report into {out}: {exc.strerror or exc}; the table above is complete") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _load(model: str, precision: str | None, *, args: argparse.Namespace):
    from lfm_colbert.eval.runner import load_system

    return load_system(model, precision, cache_dir=args.cache_dir, backend=args.backend, device=args.device,
                       query_expansion=args.query_expansion, search=args.search, batch_size=args.batch_size,
                       show_progress=not args.no_progress and sys.stderr.isatty())  # no bars in logs
