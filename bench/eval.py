"""Benchmark of the evaluation pipeline at full size: a full-size (350M) synthetic checkpoint,
converted to bf16, 8bit, 4bit and mxfp4, evaluated on a SciFact subset next to BM25.

The weights are random, so the NDCG/Recall/retention numbers say nothing about quality; the run
proves the full-size pipeline (convert, load, encode, MaxSim, metrics, table, plot) and times it.

    python bench/eval.py                                  # -> .bench/eval/{results.json,table.md,retention.png}
    python bench/eval.py --max-docs 300 --max-queries 50 --precisions bf16,4bit
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
NOTE = ("random-weight full-size synthetic checkpoint: quality numbers are meaningless; "
        "this run checks the full-size pipeline and its timings")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default=str(DATA / "scifact"), help="BEIR folder (default ../shared/data/scifact)")
    ap.add_argument("--max-docs", type=int, default=100)
    ap.add_argument("--max-queries", type=int, default=20)
    ap.add_argument("--precisions", default="bf16,8bit,4bit,mxfp4")
    ap.add_argument("--output", default=str(REPO / ".bench" / "eval"))
    ap.add_argument("--workdir", default=None, help="where the checkpoint and conversions go (default: a temp dir)")
    args = ap.parse_args(argv)

    from lfm_colbert.eval.sources import load_dataset
    from lfm_colbert.eval.report import markdown_table, write_report
    from lfm_colbert.eval.runner import load_system, run_evaluation
    from lfm_colbert.synthetic import write_checkpoint

    if not Path(args.dataset).is_dir():
        print(f"skip: {args.dataset} not found", file=sys.stderr)
        return 0
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        t0 = time.perf_counter()
        tokenizer = DATA / "lfm2-tokenizer" / "tokenizer.json"
        ckpt = write_checkpoint(Path(tmp) / "lfm2.5-full-random", size="full", variant="lfm2.5",
                                tokenizer_file=tokenizer if tokenizer.is_file() else None)
        print(f"checkpoint written in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
        ds = load_dataset(args.dataset).subset(args.max_docs, args.max_queries, seed=0)
        loader = partial(load_system, cache_dir=Path(tmp) / "cache", show_progress=True)
        precisions = [p for p in args.precisions.split(",") if p]
        t0 = time.perf_counter()
        results = run_evaluation([str(ckpt), "bm25"], [ds], precisions=precisions, loader=loader,
                                 settings={"note": NOTE, "max_docs": args.max_docs, "max_queries": args.max_queries})
        results["settings"]["total_seconds"] = round(time.perf_counter() - t0, 1)
        paths = write_report(results, args.output)
    print(markdown_table(results))
    for r in results["runs"]:
        print(f"{r['label']}: {r['seconds']}", file=sys.stderr)
    print("wrote " + ", ".join(str(p) for p in paths.values()), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
