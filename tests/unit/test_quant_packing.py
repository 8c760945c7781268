"""MLX's packed 4-bit / 8-bit weights map onto the PyTorch kernels' layouts and back, bit for bit,
and the weights each layer multiplies by are exactly `mx.dequantize`'s."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lfm_colbert.models.torch.qlayout import (
    cpu_int4_block,
    mlx_codes,
    pack_int4_cpu,
    pack_int4_cuda,
    pack_int4_planar,
    scale_and_zeros,
    unpack_int4_cpu,
    unpack_int4_planar,
)
from lfm_colbert.models.torch.quant import Int4Linear, Int8Linear, QuantizedEmbedding, int4_layout

mx = pytest.importorskip("mlx.core")

from mlx_quant import mlx_quantized, to_torch  # noqa: E402

SHAPES = [(64, 64), (128, 192), (192, 320), (96, 64), (48, 64)]  # (out N, in K); K = 3 and 5 groups of 64
BLOCK = cpu_int4_block()  # rows per block of ATen's CPU int4 layout here: 64 (AVX-512) or 32 (AVX2)
KERNEL_SHAPES = [s for s in SHAPES if BLOCK and s[0] % BLOCK == 0]


def test_cpu_layout_block_follows_the_isa_aten_dispatches_to():
    assert BLOCK == (64 if torch.backends.cpu.get_cpu_capability().startswith("AVX512") else 32)


@pytest.mark.parametrize("n,k", KERNEL_SHAPES)
def test_int4_cpu_kernel_layout_round_trips(n, k):
    packed, _, _, _ = mlx_quantized(n, k, 4)
    codes = mlx_codes(packed, 4)
    assert codes.shape == (n, k) and int(codes.max()) <= 15
    np.testing.assert_array_equal(unpack_int4_cpu(pack_int4_cpu(codes), n, k).numpy(), codes.t().numpy())


@pytest.mark.parametrize("n,k", SHAPES)
def test_int4_planar_layout_round_trips(n, k):
    codes = mlx_codes(mlx_quantized(n, k, 4)[0], 4)
    planar = pack_int4_planar(codes)
    assert planar.shape == (k, n // 2) and planar.dtype == torch.uint8  # half a byte per weight
    np.testing.assert_array_equal(unpack_int4_planar(planar).numpy(), codes.t().numpy())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("n,k", KERNEL_SHAPES)
def test_int4_cpu_kernel_multiplies_by_mx_dequantize_exactly(n, k, dtype):
    """The kernel's own weights (an identity matrix through it) are mx.dequantize's: zero = b + 8 s."""
    packed, s, b, ref = mlx_quantized(n, k, 4, seed=n + k)
    sz = scale_and_zeros(s, b, dtype)
    assert sz.shape == (k // 64, n, 2)
    # MLX's biases make b + 8 s exact even in bf16, so the mapping is exact in either dtype.
    zero = b.float() + 8 * s.float()
    assert torch.equal(zero.to(dtype).float(), zero)
    eye = torch.eye(k, dtype=dtype)
    w = torch._weight_int4pack_mm_for_cpu(eye, pack_int4_cpu(mlx_codes(packed, 4)), 64, sz).t().float()
    np.testing.assert_array_equal(w.numpy(), ref.to(dtype).float().numpy())


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("n,k", SHAPES)
def test_layer_weights_equal_mx_dequantize(n, k, bits, dtype):
    """Every layout's per-call dequantization (the path for big batches) gives mx.dequantize's
    weights, rounded once to the compute dtype."""
    packed, s, b, ref = mlx_quantized(n, k, bits, seed=bits * n + k)
    codes = mlx_codes(packed, bits)
    if bits == 8:
        layers = [Int8Linear(codes, s, b, 64, dtype)]
    else:
        layouts = ["planar"] + (["cpu-kernel"] if (n, k) in KERNEL_SHAPES else [])
        layers = [Int4Linear(codes, s, b, 64, dtype, layout) for layout in layouts]
    for layer in layers:
        got = layer.dequantized(dtype)
        assert got.dtype == dtype and got.shape == (n, k)
        np.testing.assert_array_equal(got.float().numpy(), ref.to(dtype).float().numpy())


def test_int8_codes_are_one_byte_each():
    packed, s, b, _ = mlx_quantized(128, 192, 8)
    layer = Int8Linear(mlx_codes(packed, 8), s, b, 64, torch.bfloat16)
    assert layer.codes_t.dtype == torch.uint8 and layer.codes_t.numel() == 128 * 192
    assert layer.scales.dtype == torch.bfloat16  # bf16 holds MLX's bf16 scales exactly


@pytest.mark.parametrize("bits,mode,group_size", [(8, "affine", 64), (4, "affine", 64), (4, "mxfp4", 32)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_embedding_rows_equal_the_dequantized_table(bits, mode, group_size, dtype):
    rng = np.random.default_rng(bits)
    w = mx.array(rng.standard_normal((50, 128), dtype=np.float32)).astype(mx.bfloat16)
    out = mx.quantize(w, group_size=group_size, bits=bits, mode=mode)
    packed, scales = to_torch(out[0]), to_torch(out[1])
    biases = to_torch(out[2]) if len(out) > 2 else None
    f32 = (lambda a: a.astype(mx.float32)) if mode == "affine" else (lambda a: a)
    table = torch.from_numpy(np.array(mx.dequantize(out[0], f32(out[1]), f32(out[2]) if biases is not None else None,
                                                    group_size=group_size, bits=bits, mode=mode).astype(mx.float32)))
    emb = QuantizedEmbedding(packed, scales, biases, {"mode": mode, "bits": bits, "group_size": group_size}, dtype)
    ids = torch.tensor([[1, 7, 49, 0], [7, 7, 3, 2]])
    got = emb(ids)
    assert got.shape == (2, 4, 128) and got.dtype == dtype
    np.testing.assert_array_equal(got.float().numpy(), table.to(dtype)[ids].float().numpy())


def test_layout_is_picked_from_device_dtype_and_shape():
    cpu = torch.device("cpu")
    assert int4_layout(4608, 1024, 64, torch.bfloat16, cpu) == "cpu-kernel"
    assert int4_layout(4608, 1024, 64, torch.float32, cpu) == "planar"  # ATen's fp32 int4 kernel is scalar
    assert int4_layout(48, 64, 64, torch.bfloat16, cpu) == "planar"  # not whole blocks of rows
    assert int4_layout(4608, 1024, 64, torch.bfloat16, torch.device("cuda")) == "cuda-kernel"
    assert int4_layout(4608, 1024, 64, torch.float16, torch.device("cuda")) == "planar"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none in CI)")
@pytest.mark.parametrize("n,k", [(128, 192), (4608, 1024)])
def test_int4_cuda_kernel_multiplies_by_mx_dequantize_exactly(n, k):
    packed, s, b, ref = mlx_quantized(n, k, 4, seed=k)
    codes = mlx_codes(packed, 4).cuda()
    tiles = next(t for t in (8, 4, 2) if k % (16 * t) == 0)
    eye = torch.eye(k, dtype=torch.bfloat16, device="cuda")
    w = torch._weight_int4pack_mm(eye, pack_int4_cuda(codes, tiles), 64, scale_and_zeros(s, b, torch.bfloat16).cuda())
    np.testing.assert_array_equal(w.t().float().cpu().numpy(), ref.to(torch.bfloat16).float().numpy())
    layer = Int4Linear(codes, s.cuda(), b.cuda(), 64, torch.bfloat16, "cuda-kernel", tiles)
    np.testing.assert_array_equal(layer.dequantized(torch.bfloat16).float().cpu().numpy(),
                                  ref.to(torch.bfloat16).float().numpy())
