"""`lfm-colbert verify CANDIDATE --reference SRC`: per-token cosine against PyTorch fp32."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

HELP = """\
Encode the same token ids with CANDIDATE (e.g. a converted checkpoint) and with the PyTorch fp32
REFERENCE, and report the worst and mean per-token cosine over short prompts, queries with
expansion (32 tokens) and a ~130-token passage. Exits 1 when the worst cosine is below the
threshold (default by precision, meant for trained weights: bf16 0.99, 8bit 0.98, 4bit 0.90,
mxfp4 0.85). Random-weight test models move much further; give them --min-cosine.

examples:
  lfm-colbert verify ./lfm25-4bit --reference LiquidAI/LFM2.5-ColBERT-350M
  lfm-colbert verify ./lfm25-8bit --reference ./LFM2.5-ColBERT-350M --min-cosine 0.99 --output report.json
  lfm-colbert verify ./lfm25-bf16 --reference ./LFM2.5-ColBERT-350M --backend mlx --json
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("verify", help="measure a checkpoint against the PyTorch fp32 reference",
                              description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("candidate", metavar="CANDIDATE", help="checkpoint to check (directory or hub id)")
    p.add_argument("--reference", required=True, metavar="SRC", help="the original checkpoint")
    p.add_argument("--min-cosine", type=float, default=None, metavar="X",
                   help="fail below this worst per-token cosine (default: by precision)")
    p.add_argument("--backend", default="auto", choices=["auto", "torch", "mlx"],
                   help="backend that runs the candidate (default: MLX on Apple Silicon, else PyTorch)")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                   help="compute dtype for the candidate (default float32: measures the weights alone)")
    p.add_argument("--device", default=None, help="device for the candidate's backend")
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    p.add_argument("--output", "-o", metavar="FILE", default=None, help="also write the JSON report to FILE")
    p.add_argument("--format", choices=["table", "json"], default=None, help=argparse.SUPPRESS)  # before --json
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lfm_colbert.verify import verify

    report = verify(args.candidate, args.reference, backend=args.backend, dtype=args.dtype,
                    device=args.device, min_cosine=args.min_cosine)
    data = report.to_dict()
    if args.output:
        Path(args.output).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    if args.json or args.format == "json":
        print(json.dumps(data, indent=2))
    else:
        print(f"candidate  {report.candidate} ({report.precision}, on {report.backend} {report.dtype})")
        print(f"reference  {report.reference} (torch float32)")
        print(report.table())
    return 0 if report.passed else 1
