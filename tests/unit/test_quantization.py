"""MLX's packed formats, unpacked without MLX, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lfm_colbert.config import ModelArgs
from lfm_colbert.errors import CheckpointError, InputError
from lfm_colbert.quantization import (
    EMBEDDING,
    check_params,
    dequantize_tensor_torch,
    dequantize_torch,
    module_params,
    quantizable_modules,
    unpack_codes,
)
from lfm_colbert.synthetic import model_config

FORMATS = [("affine", 8, 64), ("affine", 8, 32), ("affine", 4, 64), ("affine", 4, 128), ("mxfp4", 4, 32)]


def test_unpack_codes_is_little_endian_low_bits_first():
    word = torch.tensor([[0x76543210, 0xFEDCBA98]], dtype=torch.int64).to(torch.uint32)
    assert unpack_codes(word, 4).tolist() == [list(range(16))]
    assert unpack_codes(word, 8).tolist() == [[0x10, 0x32, 0x54, 0x76, 0x98, 0xBA, 0xDC, 0xFE]]
    with pytest.raises(CheckpointError, match="3-bit"):
        unpack_codes(word, 3)


@pytest.mark.parametrize("mode,bits,group_size", FORMATS)
def test_dequantize_torch_matches_mlx_bit_for_bit(mode, bits, group_size):
    mx = pytest.importorskip("mlx.core")
    rng = np.random.default_rng(bits + group_size)
    w = mx.array(rng.standard_normal((48, 256), dtype=np.float32) * 0.05).astype(mx.bfloat16)
    packed = mx.quantize(w, group_size=group_size, bits=bits, mode=mode)
    q, scales = packed[0], packed[1]
    biases = packed[2] if len(packed) > 2 else None
    # mx.dequantize on fp32 scales/biases: what the MLX backend computes on the CPU.
    f32 = (lambda a: a.astype(mx.float32)) if mode == "affine" else (lambda a: a)
    want = np.array(mx.dequantize(q, f32(scales), None if biases is None else f32(biases),
                                  group_size=group_size, bits=bits, mode=mode).astype(mx.float32))

    def to_torch(a):  # bf16 has no numpy dtype: go through fp32 (exact)
        return torch.from_numpy(np.array(a.astype(mx.float32) if a.dtype == mx.bfloat16 else a))

    got = dequantize_tensor_torch(to_torch(q), to_torch(scales), None if biases is None else to_torch(biases),
                                  mode, bits, group_size)
    assert got.dtype == torch.float32 and tuple(got.shape) == (48, 256)
    np.testing.assert_array_equal(got.numpy(), want)
    # And it is a real approximation of the weights, not just two identical wrong answers.
    err = np.abs(got.numpy() - np.array(w.astype(mx.float32))).max()
    assert 0 < err < (0.01 if bits == 8 else 0.1)


def test_dequantize_torch_replaces_packed_modules_only():
    mx = pytest.importorskip("mlx.core")
    w = mx.random.normal((8, 64), key=mx.random.key(0))
    q, s, b = mx.quantize(w, group_size=64, bits=8)
    weights = {
        "model.layers.0.conv.in_proj.weight": torch.from_numpy(np.array(q)),
        "model.layers.0.conv.in_proj.scales": torch.from_numpy(np.array(s)),
        "model.layers.0.conv.in_proj.biases": torch.from_numpy(np.array(b)),
        "model.embedding_norm.weight": torch.ones(64),
    }
    quant = {"mode": "affine", "bits": 8, "group_size": 64, "quantized": ["model.layers.0.conv.in_proj"]}
    out = dequantize_torch(weights, quant)
    assert set(out) == {"model.layers.0.conv.in_proj.weight", "model.embedding_norm.weight"}
    assert out["model.layers.0.conv.in_proj.weight"].shape == (8, 64)
    assert out["model.embedding_norm.weight"] is weights["model.embedding_norm.weight"]
    # config.json listing a module the file does not pack is a broken checkpoint.
    with pytest.raises(CheckpointError, match="disagree"):
        dequantize_torch(weights, {**quant, "quantized": ["model.layers.0.conv.in_proj", "dense"]})


def test_overrides_give_a_module_its_own_format():
    weights = {"a.scales": 0, "b.scales": 0}
    quant = {"mode": "affine", "bits": 4, "group_size": 64, "quantized": ["a", "b"],
             "overrides": {"b": {"bits": 8}}}
    params = module_params(weights, quant)
    assert params["a"]["bits"] == 4 and params["b"]["bits"] == 8


@pytest.mark.parametrize("mode,bits,group_size,match", [
    ("affine", 3, 64, "unsupported"), ("mxfp4", 4, 64, "32"), ("affine", 8, 48, "group size"), ("nvfp4", 4, 16, "unsupported"),
])
def test_check_params_rejects_bad_formats(mode, bits, group_size, match):
    with pytest.raises(InputError, match=match):
        check_params(mode, bits, group_size)


def test_quantizable_modules_are_the_backbone_linears():
    args = ModelArgs.from_config(model_config("full"))
    paths = quantizable_modules(args, embedding=False)
    # 10 conv layers x (2 + 3) + 6 attention layers x (4 + 3)
    assert len(paths) == 10 * 5 + 6 * 7
    assert not any(p.endswith(("norm", "conv.conv")) or p == "dense" for p in paths)
    assert EMBEDDING not in paths and EMBEDDING in quantizable_modules(args, embedding=True)
