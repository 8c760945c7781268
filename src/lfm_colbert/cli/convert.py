"""`lfm-colbert convert SRC OUT --precision ...`: make a self-contained MLX checkpoint."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

HELP = """\
Convert an LFM2 / LFM2.5 ColBERT checkpoint (hub id or local PyLate-layout directory) into a
self-contained MLX checkpoint: one safetensors file in MLX layout, the tokenizer and ColBERT
settings, and a README model card with the sizes and the measured fidelity. Both backends load
the result with the same call as the original (8-bit and 4-bit stay packed in memory in both).

precisions:
  bf16    bfloat16, no quantization (~707 MB for the 350M model)
  8bit    affine 8-bit, group size 64 (~376 MB; embedding quantized too)
  4bit    affine 4-bit, group size 64 (Linear layers only; the embedding stays bf16)
  mxfp4   MXFP4, group size 32 (Linear layers only; the embedding stays bf16)
Norms, the short-conv kernels and the 1024->128 Dense head always stay bf16.

examples:
  lfm-colbert convert LiquidAI/LFM2.5-ColBERT-350M lfm25-colbert-mlx-bf16
  lfm-colbert convert ./LFM2.5-ColBERT-350M ./lfm25-4bit --precision 4bit
  lfm-colbert convert ./LFM2.5-ColBERT-350M ./lfm25-4bit-g32 --precision 4bit --group-size 32 --force
  lfm-colbert convert ./LFM2.5-ColBERT-350M ./lfm25-8bit --precision 8bit --upload me/LFM2.5-ColBERT-350M-8bit

The fidelity measured after converting is checked against the threshold `verify` uses for that
precision (bf16 0.99, 8bit 0.98, 4bit 0.90, mxfp4 0.85); a result below it is still written, with
a warning that says so.

The conversion needs MLX (pip install 'lfm-colbert[mlx]'; on Linux that is mlx[cpu]).
Check a result any time with: lfm-colbert verify OUT --reference SRC
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("convert", help="convert a checkpoint to MLX (bf16, 8bit, 4bit, mxfp4)",
                              description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", metavar="SRC", help="hub id or local checkpoint directory")
    p.add_argument("out", metavar="OUT", help="output directory (must not exist unless --force)")
    p.add_argument("--precision", default="bf16", metavar="P",
                   help="bf16 (default), 8bit, 4bit or mxfp4")
    p.add_argument("--group-size", type=int, default=None, metavar="N",
                   help="quantization group size (default 64 for 8bit/4bit; mxfp4 needs 32)")
    emb = p.add_mutually_exclusive_group()
    emb.add_argument("--quantize-embedding", dest="quantize_embedding", action="store_true", default=None,
                     help="quantize the token embedding too (default: only for 8bit)")
    emb.add_argument("--keep-embedding", dest="quantize_embedding", action="store_false",
                     help="keep the token embedding in bf16")
    p.add_argument("--force", action="store_true", help="replace OUT if it exists")
    p.add_argument("--no-verify", dest="verify", action="store_false",
                   help="skip the fidelity measurement (the model card then has no numbers)")
    p.add_argument("--upload", metavar="REPO_ID", default=None,
                   help="push OUT to this Hugging Face repo afterwards (needs `huggingface-cli login`)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lfm_colbert.convert import convert

    try:
        import mlx.core  # noqa: F401
    except ImportError:
        from lfm_colbert.errors import InputError

        raise InputError("convert needs MLX: pip install 'lfm-colbert[mlx]' (mlx[cpu] on Linux)") from None

    result = convert(
        args.src, args.out, args.precision, group_size=args.group_size,
        quantize_embedding=args.quantize_embedding, force=args.force, verify=args.verify,
        upload=args.upload, progress=lambda msg: print(msg, file=sys.stderr),
    )
    if args.json:
        _say_if_below_threshold(result)
        print(json.dumps({
            "path": str(result.path), "precision": result.precision, "weights_bytes": result.weights_bytes,
            "total_bytes": result.total_bytes, "quantization": result.quantization, "fidelity": result.fidelity,
        }, indent=2))
        return 0
    print(f"{result.path}: {result.precision}, weights {result.weights_bytes / 1e6:.1f} MB "
          f"(directory {result.total_bytes / 1e6:.1f} MB)")
    if result.fidelity:
        f = result.fidelity
        print(f"fidelity vs PyTorch fp32: worst per-token cosine {f['worst']:.6f}, mean {f['mean']:.6f} "
              f"over {f['tokens']} tokens")
    _say_if_below_threshold(result)
    return 0


def _say_if_below_threshold(result: Any) -> None:
    """The conversion is written either way; a cosine under what `verify` accepts must not go unnoticed."""
    f = result.fidelity
    if f and not f.get("passed", True):
        print(f"warning: the worst per-token cosine {f['worst']:.6f} is below {f.get('min_cosine', '?')}, the {result.precision} "
              f"threshold `lfm-colbert verify` checks: this checkpoint's vectors differ from the original's more than "
              "that precision should (expected only for random-weight test checkpoints)", file=sys.stderr)
