"""MLX's packed weights and the layouts PyTorch's int4 kernels take, both ways (pure functions,
tested bit for bit in tests/unit/test_quant_packing.py)."""

from __future__ import annotations

import functools

import torch

from lfm_colbert.quantization import unpack_codes


def mlx_codes(packed: torch.Tensor, bits: int) -> torch.Tensor:
    """MLX's uint32 words (out, in * bits / 32) -> codes uint8 (out, in)."""
    return unpack_codes(packed, bits)


def scale_and_zeros(scales: torch.Tensor, biases: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """MLX (out, groups) scales / biases -> tinygemm's (groups, out, 2) [scale, zero], zero = b + 8 s.

    (q - 8) * s + (b + 8 s) = s * q + b. Computed in fp32, where b + 8 s is exact for bf16 inputs
    within 2^15 of each other; MLX's biases make it exact in bf16 too (checked by the tests)."""
    s, b = scales.float(), biases.float()
    return torch.stack([s.t(), (b + 8 * s).t()], dim=-1).to(dtype).contiguous()


def pack_int4_cpu(codes: torch.Tensor) -> torch.Tensor:
    """codes (N, K) -> the CPU kernel's layout: (N, K/2) uint8, blocks of rows interleaved (64 rows
    under AVX-512, 32 under AVX2: see `unpack_int4_cpu`)."""
    return torch._convert_weight_to_int4pack_for_cpu(codes.to(torch.int32).contiguous(), 1)


def unpack_int4_cpu(packed: torch.Tensor, n: int, k: int, out: torch.Tensor | None = None,
                    block: int | None = None) -> torch.Tensor:
    """The CPU kernel's layout -> codes transposed, (K, N) uint8 (N a multiple of `block`).

    ATen packs rows in blocks of 64 under AVX-512 and 32 under AVX2 (`cpu_int4_block`): for block
    nb and input k it stores block/2 bytes whose low nibbles are rows nb*block + 0..block/2-1 and
    high nibbles the block's other half."""
    block = block or cpu_int4_block()
    if block is None or n % block:
        raise ValueError(f"no known CPU int4 layout for {n} rows on this machine")
    h = block // 2
    src = packed.view(n // block, k, h).transpose(0, 1)  # (K, NB, block/2)
    out = torch.empty(k, n, dtype=torch.uint8, device=packed.device) if out is None else out
    o = out.view(k, n // block, 2, h)
    torch.bitwise_and(src, 15, out=o[:, :, 0])
    torch.bitwise_right_shift(src, 4, out=o[:, :, 1])
    return out


@functools.lru_cache(maxsize=None)
def cpu_int4_block() -> int | None:
    """Rows per block of ATen's CPU int4 layout in this process (it follows the ISA ATen dispatches
    to: 64 with AVX-512, 32 with AVX2), found by packing a probe and reading it back each way; None
    where neither reading fits (the 4-bit layers then stay planar)."""
    codes = (torch.arange(64 * 64) * 7 % 16).view(64, 64).to(torch.uint8)
    try:
        packed = pack_int4_cpu(codes)
    except RuntimeError:  # pragma: no cover - a build without the kernel
        return None
    for block in (64, 32):
        if torch.equal(unpack_int4_cpu(packed, 64, 64, block=block), codes.t()):
            return block
    return None


def pack_int4_cuda(codes: torch.Tensor, inner_k_tiles: int) -> torch.Tensor:
    """codes (N, K) on a CUDA device -> `_weight_int4pack_mm`'s layout (even inputs in high nibbles)."""
    c = codes.to(torch.uint8)
    return torch._convert_weight_to_int4pack((c[:, ::2] << 4 | c[:, 1::2]).contiguous(), inner_k_tiles)


def pack_int4_planar(codes: torch.Tensor) -> torch.Tensor:
    """codes (N, K) -> (K, N/2) bytes: column j holds output j (low nibble) and N/2 + j (high)."""
    t = codes.t().to(torch.uint8)
    h = t.shape[1] // 2
    return (t[:, :h] | (t[:, h:] << 4)).contiguous()


def unpack_int4_planar(planar: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """(K, N/2) bytes -> codes transposed, (K, N) uint8: two contiguous half-row writes."""
    k, h = planar.shape
    out = torch.empty(k, 2 * h, dtype=torch.uint8, device=planar.device) if out is None else out
    torch.bitwise_and(planar, 15, out=out[:, :h])
    torch.bitwise_right_shift(planar, 4, out=out[:, h:])
    return out
