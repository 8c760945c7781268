"""Random weights quantized by MLX, as torch tensors: the inputs of the quantized-layer tests."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import torch


def to_torch(a) -> torch.Tensor:
    """MLX array -> torch tensor with the same bits (bf16 through fp32, which holds it exactly)."""
    if a.dtype == mx.bfloat16:
        return torch.from_numpy(np.array(a.astype(mx.float32))).to(torch.bfloat16)
    return torch.from_numpy(np.array(a))


def mlx_quantized(n: int, k: int, bits: int, seed: int = 0, group_size: int = 64):
    """Random bf16 weights quantized by MLX: (packed, scales, biases) as torch tensors, and
    mx.dequantize's fp32 weights (on fp32 scales / biases, as the dequantize-then-matmul path)."""
    rng = np.random.default_rng(seed)
    w = mx.array(rng.standard_normal((n, k), dtype=np.float32) * 0.05).astype(mx.bfloat16)
    q, s, b = mx.quantize(w, group_size=group_size, bits=bits)
    ref = mx.dequantize(q, s.astype(mx.float32), b.astype(mx.float32), group_size=group_size, bits=bits)
    return to_torch(q), to_torch(s), to_torch(b), torch.from_numpy(np.array(ref.astype(mx.float32)))
