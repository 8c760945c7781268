"""Weight quantization in MLX's formats, and unpacking them without MLX.

A converted checkpoint (see `convert.py`) stores each quantized module `m` as
    m.weight  uint32 (out, in * bits / 32)   packed codes, little-endian, first element in the low bits
    m.scales  (out, in / group_size)         bf16 for affine; uint8 e8m0 exponents for mxfp4
    m.biases  (out, in / group_size)         affine only
and config.json gets a `quantization` block:
    {"mode": "affine" | "mxfp4", "bits": 8 | 4, "group_size": 64 | 32,
     "quantized": ["model.layers.0.conv.in_proj", ...], "overrides": {path: {mode, bits, group_size}}}

Affine: w = scale * q + bias per group. mxfp4: w = e2m1(q) * 2^(e - 127) per group of 32.
`dequantize_torch` undoes both in PyTorch alone, so a machine without MLX loads every precision.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lfm_colbert.config import ModelArgs
from lfm_colbert.errors import CheckpointError, InputError

if TYPE_CHECKING:  # pragma: no cover
    import mlx.core as mx
    import torch

# precision name -> quantization parameters (None: plain bf16).
PRECISIONS: dict[str, dict[str, Any] | None] = {
    "bf16": None,
    "8bit": {"mode": "affine", "bits": 8, "group_size": 64},
    "4bit": {"mode": "affine", "bits": 4, "group_size": 64},
    "mxfp4": {"mode": "mxfp4", "bits": 4, "group_size": 32},
}
AFFINE_GROUP_SIZES = (32, 64, 128)
SUPPORTED = {("affine", 8), ("affine", 4), ("mxfp4", 4)}

# The Linear layers inside each block. Norms, the depthwise convs (tiny, and MLX cannot quantize
# Conv1d) and the 1024->128 Dense head (0.13M params, feeds every output vector) stay bf16.
ATTENTION_LINEARS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj")
CONV_LINEARS = ("conv.in_proj", "conv.out_proj")
MLP_LINEARS = ("feed_forward.w1", "feed_forward.w3", "feed_forward.w2")
EMBEDDING = "model.embed_tokens"

# e2m1 code -> value: sign bit 3, then 2 exponent bits and 1 mantissa bit.
E2M1_VALUES = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0]


def quantizable_modules(args: ModelArgs, embedding: bool) -> list[str]:
    """Module paths to quantize: every backbone Linear, plus the token embedding if asked."""
    paths = [EMBEDDING] if embedding else []
    for i, kind in enumerate(args.layer_types):
        ops = ATTENTION_LINEARS if kind == "full_attention" else CONV_LINEARS
        paths += [f"model.layers.{i}.{name}" for name in ops + MLP_LINEARS]
    return paths


def check_params(mode: str, bits: int, group_size: int) -> None:
    if (mode, bits) not in SUPPORTED:
        raise InputError(f"unsupported quantization mode={mode!r} bits={bits}; supported: {sorted(SUPPORTED)}")
    if mode == "mxfp4" and group_size != 32:
        raise InputError(f"mxfp4 needs group size 32, got {group_size}")
    if mode == "affine" and group_size not in AFFINE_GROUP_SIZES:
        raise InputError(f"affine group size must be one of {AFFINE_GROUP_SIZES}, got {group_size}")


def module_params(weights: dict[str, Any], quant: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Quantized module path -> {mode, bits, group_size}; checks the file against config.json."""
    in_file = {k[: -len(".scales")] for k in weights if k.endswith(".scales")}
    listed = set(quant.get("quantized", in_file))
    if listed != in_file:
        diff = sorted(listed ^ in_file)
        raise CheckpointError(f"config.json's quantization block and the weights disagree on: {diff[:5]}")
    base = {k: quant[k] for k in ("mode", "bits", "group_size") if k in quant}
    base.setdefault("mode", "affine")
    overrides = quant.get("overrides") or {}
    params = {}
    for path in sorted(in_file):
        p = {**base, **overrides.get(path, {})}
        if "bits" not in p or "group_size" not in p:
            raise CheckpointError(f"config.json's quantization block has no bits/group_size for {path}")
        check_params(p["mode"], int(p["bits"]), int(p["group_size"]))
        params[path] = p
    return params


# -- PyTorch (no MLX needed) ------------------------------------------------------------------------


def unpack_codes(packed: "torch.Tensor", bits: int) -> "torch.Tensor":
    """uint32 (out, in * bits / 32) -> integer codes (out, in) as uint8."""
    import torch

    # Little-endian words: the bytes in memory order are the codes in element order (8-bit),
    # or pairs of codes, low nibble first (4-bit).
    b = packed.contiguous().view(torch.uint8)  # (out, in * bits / 8)
    if bits == 8:
        return b
    if bits == 4:
        return torch.stack([b & 0x0F, b >> 4], dim=-1).flatten(-2)  # (out, in)
    raise CheckpointError(f"cannot unpack {bits}-bit weights (supported: 8, 4)")


def dequantize_tensor_torch(
    packed: "torch.Tensor", scales: "torch.Tensor", biases: "torch.Tensor | None", mode: str, bits: int, group_size: int
) -> "torch.Tensor":
    """One packed weight -> float32 (out, in), identical to `mx.dequantize` on fp32 scales/biases."""
    import torch

    if packed.dtype not in (torch.uint32, torch.int32):
        raise CheckpointError(f"a quantized weight must be uint32, got {packed.dtype}")
    q = unpack_codes(packed, bits)  # (out, in)
    out_dim, in_dim = q.shape
    if in_dim != scales.shape[-1] * group_size:
        raise CheckpointError(f"packed weight {tuple(packed.shape)} does not fit scales {tuple(scales.shape)}")
    q = q.view(out_dim, in_dim // group_size, group_size)  # (out, groups, g)
    if mode == "affine":
        if biases is None:
            raise CheckpointError("an affine-quantized weight needs biases")
        w = scales.float()[..., None] * q.float() + biases.float()[..., None]
    elif mode == "mxfp4":
        lut = torch.tensor(E2M1_VALUES, dtype=torch.float32)
        scale = torch.exp2(scales.to(torch.int32).float() - 127.0)  # e8m0: a power of two
        w = lut[q.long()] * scale[..., None]
    else:
        raise CheckpointError(f"unknown quantization mode {mode!r}")
    return w.reshape(out_dim, in_dim)


def dequantize_torch(weights: dict[str, "torch.Tensor"], quantization: dict[str, Any]) -> dict[str, "torch.Tensor"]:
    """Replace every packed `m.weight` (+ `m.scales`, `m.biases`) with a float32 `m.weight`."""
    params = module_params(weights, quantization)
    out = dict(weights)
    for path, p in params.items():
        packed, scales = out.pop(path + ".weight", None), out.pop(path + ".scales")
        biases = out.pop(path + ".biases", None)
        if packed is None:
            raise CheckpointError(f"{path}.scales has no {path}.weight beside it")
        out[path + ".weight"] = dequantize_tensor_torch(
            packed, scales, biases, p["mode"], int(p["bits"]), int(p["group_size"])
        )
    return out


# -- MLX ----------------------------------------------------------------------------------------------


def quantize_mlx(
    weights: dict[str, "mx.array"], modules: list[str], mode: str, bits: int, group_size: int,
    overrides: dict[str, dict[str, Any]] | None = None,
) -> dict[str, "mx.array"]:
    """Pack `m.weight` for each module path with `mx.quantize` (the reference packing)."""
    import mlx.core as mx

    overrides = overrides or {}
    out = dict(weights)
    for path in modules:
        p = {"mode": mode, "bits": bits, "group_size": group_size, **overrides.get(path, {})}
        w = out.pop(path + ".weight")
        packed = mx.quantize(w, group_size=p["group_size"], bits=p["bits"], mode=p["mode"])
        out[path + ".weight"], out[path + ".scales"] = packed[0], packed[1]
        if len(packed) > 2:  # affine has biases; mxfp4 does not
            out[path + ".biases"] = packed[2]
    return out


def dequantize_mlx(weights: dict[str, "mx.array"], quantization: dict[str, Any]) -> dict[str, "mx.array"]:
    """The MLX twin of `dequantize_torch` (float32 weights), via `mx.dequantize`."""
    import mlx.core as mx

    params = module_params(weights, quantization)
    out = dict(weights)
    for path, p in params.items():
        packed, scales = out.pop(path + ".weight"), out.pop(path + ".scales")
        biases = out.pop(path + ".biases", None)
        if mx.issubdtype(scales.dtype, mx.floating):
            scales = scales.astype(mx.float32)
            biases = biases.astype(mx.float32) if biases is not None else None
        out[path + ".weight"] = mx.dequantize(
            packed, scales, biases, group_size=int(p["group_size"]), bits=int(p["bits"]), mode=p["mode"]
        ).astype(mx.float32)
    return out
