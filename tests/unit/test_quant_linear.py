"""A quantized linear equals the linear on its dequantized weight, to float rounding, on every
path (int4 kernel, int4 / int8 dequantized per call) and many shapes; the portable-CPU switch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lfm_colbert.models.torch import cpu as cpu_mod
from lfm_colbert.models.torch import quant
from lfm_colbert.models.torch.backend import default_dtype
from lfm_colbert.models.torch.qlayout import cpu_int4_block, mlx_codes
from lfm_colbert.models.torch.quant import Int4Linear, Int8Linear

mx = pytest.importorskip("mlx.core")

from mlx_quant import mlx_quantized  # noqa: E402

# Leading shapes of the input: M = 1 (one token), odd M, one padded query batch, a document batch.
LEADING = [(1,), (3,), (1, 32), (2, 7), (5, 33), (130,)]
SIZES = [(64, 64), (128, 192), (192, 320), (96, 320)]  # (N, K): K of 1, 3 and 5 groups


def layers(n: int, k: int, bits: int, dtype: torch.dtype) -> list[torch.nn.Module]:
    packed, s, b, _ = mlx_quantized(n, k, bits, seed=n * k + bits)
    codes = mlx_codes(packed, bits)
    if bits == 8:
        return [Int8Linear(codes, s, b, 64, dtype)]
    out = [Int4Linear(codes, s, b, 64, dtype, "planar")]
    if n % cpu_int4_block() == 0:
        out.append(Int4Linear(codes, s, b, 64, dtype, "cpu-kernel"))
    return out


@pytest.fixture
def kernel_for_every_batch(monkeypatch):
    """The CPU int4 kernel for any number of rows (it hands big batches to the dense GEMM otherwise)."""
    monkeypatch.setattr(Int4Linear, "cpu_kernel_max_rows", 1 << 30)


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("n,k", SIZES)
@pytest.mark.parametrize("lead", LEADING)
def test_fp32_quantized_linear_equals_dequantized_linear(n, k, bits, lead, monkeypatch, kernel_for_every_batch):
    # fp32 activations into the CPU int4 kernel too (ATen's scalar variant: exact, slow; tests only).
    monkeypatch.setitem(quant.INT4_KERNEL_DTYPES, "cpu", (torch.bfloat16, torch.float32))
    x = torch.randn(*lead, k, generator=torch.Generator().manual_seed(k))
    for layer in layers(n, k, bits, torch.float32):
        want = F.linear(x.double(), layer.dequantized(torch.float32).double())
        got = layer(x)
        assert got.shape == (*lead, n) and got.dtype == torch.float32
        torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("n,k", SIZES)
@pytest.mark.parametrize("lead", LEADING)
def test_bf16_quantized_linear_equals_dequantized_linear(n, k, bits, lead, kernel_for_every_batch):
    """bf16 in, bf16 out: within one bf16 rounding of the exact product (fp32 accumulation). The
    int4 kernel dequantizes into fp32 registers, the dense path into bf16: each is checked against
    the weights it multiplies by."""
    x = torch.randn(*lead, k, generator=torch.Generator().manual_seed(k)).to(torch.bfloat16)
    for layer in layers(n, k, bits, torch.bfloat16):
        kernel = getattr(layer, "layout", "") == "cpu-kernel"
        w = layer.dequantized(torch.float32 if kernel else torch.bfloat16)
        exact = F.linear(x.double(), w.double())
        got = layer(x)
        assert got.shape == (*lead, n) and got.dtype == torch.bfloat16
        torch.testing.assert_close(got.double(), exact, rtol=2**-7, atol=1e-3 * float(exact.abs().max()))


def test_cpu_kernel_is_used_for_small_batches_only(monkeypatch):
    packed, s, b, _ = mlx_quantized(128, 192, 4)
    layer = Int4Linear(mlx_codes(packed, 4), s, b, 64, torch.bfloat16, "cpu-kernel")
    calls = []
    real = torch._weight_int4pack_mm_for_cpu
    monkeypatch.setattr(torch, "_weight_int4pack_mm_for_cpu", lambda *a: calls.append(a[0].shape[0]) or real(*a))
    layer(torch.randn(1, 32, 192, dtype=torch.bfloat16))
    layer(torch.randn(4, 512, 192, dtype=torch.bfloat16))
    assert calls == [32]  # the 2,048-row batch took the dequantize + dense GEMM path


def test_dequantized_weights_live_in_one_reused_buffer():
    packed, s, b, _ = mlx_quantized(128, 192, 8)
    layer = Int8Linear(mlx_codes(packed, 8), s, b, 64, torch.bfloat16)
    a = layer.weight_t(torch.bfloat16)
    b2 = layer.weight_t(torch.bfloat16)
    assert a.data_ptr() == b2.data_ptr()  # no fresh (K, N) allocation per call


@pytest.mark.parametrize("env", [("LFM_COLBERT_CPU", "portable"), ("LFM_COLBERT_PORTABLE_CPU", "1")])
def test_portable_switch_makes_the_avx2_choices(monkeypatch, env):
    """The one switch the MaxSim kernel obeys too (lfm_colbert.cpu), and its older name."""
    monkeypatch.delenv("LFM_COLBERT_CPU", raising=False)
    monkeypatch.delenv("LFM_COLBERT_PORTABLE_CPU", raising=False)
    monkeypatch.setenv(*env)
    feats = cpu_mod.cpu_features()
    assert feats.portable and not feats.bf16 and not feats.isa.startswith("AVX512")
    assert default_dtype("cpu") == "float32"  # bf16 is emulated on AVX2-only CPUs
    assert "portable" in cpu_mod.capabilities_line()
    monkeypatch.delenv(env[0])
    assert not cpu_mod.cpu_features().portable


def test_scratch_works_in_and_out_of_inference_mode(monkeypatch):
    monkeypatch.setattr(quant.SCRATCH, "bufs", {})  # fresh buffers, first made below
    packed, s, b, _ = mlx_quantized(128, 192, 8, seed=11)
    layer = Int8Linear(mlx_codes(packed, 8), s, b, 64, torch.float32)
    x = torch.randn(3, 192)
    with torch.inference_mode():
        a = layer(x)  # the scratch buffer is first made here
    with torch.no_grad():
        torch.testing.assert_close(layer(x), a)
