"""Options that several sub-commands share."""

from __future__ import annotations

import argparse


def add_placement(p: argparse.ArgumentParser) -> None:
    """--backend and --device: where the model runs."""
    p.add_argument("--backend", choices=["auto", "torch", "mlx"], default="auto",
                   help="auto (default): MLX on Apple Silicon, else PyTorch")
    p.add_argument("--device", default=None,
                   help="PyTorch device: cpu, cuda, cuda:1, mps (default: CUDA when present, else the CPU)")
