"""Weight-only quantized layers: MLX's packed 4-bit / 8-bit checkpoints run in PyTorch without
dequantizing the model.

MLX affine format (see `lfm_colbert.quantization`): w = s * q + b per group of `group_size` inputs,
q in [0, 2^bits). What each layer keeps in memory and how it multiplies, chosen at load:

- 4-bit affine, `Int4Linear`: PyTorch's grouped int4 weight-only kernels (tinygemm), which compute
  w = (q - 8) * scale + zero; MLX's format maps onto them exactly with zero = b + 8 * s (fp32
  arithmetic; bit for bit against `mx.dequantize`, tests/unit/test_quant_packing.py). Layout
  picked at load: on the CPU `_convert_weight_to_int4pack_for_cpu` (bf16 activations: ATen's fp32
  variant is scalar, ~3 GFLOP/s), on CUDA `_convert_weight_to_int4pack`. The CPU kernel computes in
  fp32 FMAs, so above `cpu_kernel_max_rows` rows (documents) a dense bf16 GEMM on the layer's weight,
  dequantized into a per-thread scratch buffer, is faster (bench/encode.py). Where no kernel fits
  (fp32 / fp16 compute, or odd shapes) the codes are kept "planar", cheap to dequantize per call.
- 8-bit affine, `Int8Linear`: no grouped int8 weight-only kernel exists in PyTorch (the int8 one,
  `_weight_int8pack_mm`, has one scale per output channel; torchao's grouped int8 dequantizes too),
  so the codes stay int8 and each call dequantizes the layer into the scratch buffer (one fused
  `addcmul`, rounding once, as `mx.dequantize` then a cast would) and runs the dense GEMM.
- mxfp4 (e2m1 values, power-of-two scales): no PyTorch kernel; dequantized at load to bf16, which
  holds every mxfp4 value exactly, and run as a plain Linear (`BF16Linear`).
- The token embedding, when quantized, stays packed (`QuantizedEmbedding`): the rows used are
  gathered, then dequantized.
"""

from __future__ import annotations

import math
import threading
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lfm_colbert.errors import CheckpointError
from lfm_colbert.models.torch.lfm2 import Linear
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
from lfm_colbert.quantization import dequantize_tensor_torch, module_params

INT4_GROUP_SIZES = (32, 64, 128, 256)  # what tinygemm's kernels take
# Activation dtypes given to the int4 kernels. ATen's CPU kernel is vectorized for bf16 only (its
# fp32 / fp16 variants are scalar loops, ~3 GFLOP/s); tests add fp32 to run it exactly.
INT4_KERNEL_DTYPES: dict[str, tuple[torch.dtype, ...]] = {"cpu": (torch.bfloat16,), "cuda": (torch.bfloat16,)}


# -- scratch: one dequantized layer at a time ---------------------------------------------------------


class _Scratch(threading.local):
    """Per-thread buffers reused by every quantized layer: a dequantized weight lives only for its
    own GEMM, so the model holds at most one layer's worth (9.4 MB in bf16 at full size) beside the
    packed weights, and no call faults in fresh pages."""

    def __init__(self) -> None:
        self.bufs: dict[tuple[str, torch.dtype, torch.device], torch.Tensor] = {}

    def get(self, slot: str, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        n = math.prod(shape)
        key = (slot, dtype, device)
        buf = self.bufs.get(key)
        if buf is None or buf.numel() < n:
            # A normal tensor even when first asked for under inference_mode (as the backend's
            # forward runs): it can then be written in and out of that mode alike.
            with torch.inference_mode(False):
                buf = self.bufs[key] = torch.empty(n, dtype=dtype, device=device)
        return buf[:n].view(shape)


SCRATCH = _Scratch()


def _param_dtype(dtype: torch.dtype) -> torch.dtype:
    """Scales / biases dtype for in-place dequantization: bf16 and fp32 hold MLX's bf16 scales
    exactly; fp16 does not (range), so fp16 models dequantize in fp32 and cast."""
    return dtype if dtype in (torch.bfloat16, torch.float32) else torch.float32


def _affine_dequant_t(codes_t: torch.Tensor, scales: torch.Tensor, biases: torch.Tensor, group_size: int,
                      dtype: torch.dtype) -> torch.Tensor:
    """codes (K, N) uint8, scales / biases (G, 1, N) -> the weight transposed (K, N) in `dtype`,
    in the scratch buffer. addcmul computes s * q + b in fp32 and rounds once: the same values as
    dequantizing to fp32 and casting."""
    k, n = codes_t.shape
    pd = scales.dtype
    w = SCRATCH.get("w", (k // group_size, group_size, n), pd, codes_t.device)
    w.copy_(codes_t.view(k // group_size, group_size, n))
    torch.addcmul(biases, w, scales, out=w)
    w = w.view(k, n)
    return w if pd == dtype else w.to(dtype)


class QuantizedLinear(nn.Module):
    """Common parts: shapes, the matmul on a dequantized (K, N) weight, and reporting."""

    kind = "quantized"

    def __init__(self, in_features: int, out_features: int, bits: int, group_size: int):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.bits, self.group_size = bits, group_size

    def weight_t(self, dtype: torch.dtype) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def logical_params(self) -> int:
        return self.in_features * self.out_features

    def dequantized(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The (out, in) weight this layer multiplies by, as a fresh tensor (tests, inspection)."""
        return self.weight_t(dtype).t().clone()

    def _dense(self, x: torch.Tensor) -> torch.Tensor:
        x2 = x.reshape(-1, self.in_features)
        return torch.mm(x2, self.weight_t(x.dtype)).view(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, bits={self.bits}, group_size={self.group_size}, {self.kind}"


class Int8Linear(QuantizedLinear):
    kind = "int8 codes, dequantized per layer into a dense GEMM"

    def __init__(self, codes: torch.Tensor, scales: torch.Tensor, biases: torch.Tensor, group_size: int,
                 dtype: torch.dtype):
        n, k = codes.shape
        super().__init__(k, n, 8, group_size)
        pd = _param_dtype(dtype)
        g = k // group_size
        self.register_buffer("codes_t", codes.t().contiguous(), persistent=False)  # (K, N) uint8
        self.register_buffer("scales", scales.t().reshape(g, 1, n).to(pd).contiguous(), persistent=False)
        self.register_buffer("biases", biases.t().reshape(g, 1, n).to(pd).contiguous(), persistent=False)

    def weight_t(self, dtype: torch.dtype) -> torch.Tensor:
        return _affine_dequant_t(self.codes_t, self.scales, self.biases, self.group_size, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._dense(x)


class Int4Linear(QuantizedLinear):
    """4-bit affine. `layout`: "cpu-kernel", "cuda-kernel" or "planar" (no kernel: dequantize per call)."""

    # Rows up to which the CPU int4 kernel beats dequantize + bf16 GEMM (bench/encode.py measures
    # both per GEMM shape; the kernel runs fp32 FMAs, half the rate of bf16 dot products).
    cpu_kernel_max_rows = 64

    def __init__(self, codes: torch.Tensor, scales: torch.Tensor, biases: torch.Tensor, group_size: int,
                 dtype: torch.dtype, layout: str, inner_k_tiles: int = 8):
        n, k = codes.shape
        super().__init__(k, n, 4, group_size)
        self.layout = layout
        if layout == "cpu-kernel":
            self.register_buffer("packed", pack_int4_cpu(codes), persistent=False)
        elif layout == "cuda-kernel":
            self.register_buffer("packed", pack_int4_cuda(codes, inner_k_tiles), persistent=False)
        elif layout == "planar":
            self.register_buffer("packed", pack_int4_planar(codes), persistent=False)
        else:
            raise ValueError(f"unknown int4 layout {layout!r}")
        if layout.endswith("kernel"):  # tinygemm takes scales and zero points in the activation dtype
            self.register_buffer("scale_zeros", scale_and_zeros(scales, biases, dtype), persistent=False)
        else:
            pd, g = _param_dtype(dtype), k // group_size
            self.register_buffer("scales", scales.t().reshape(g, 1, n).to(pd).contiguous(), persistent=False)
            self.register_buffer("biases", biases.t().reshape(g, 1, n).to(pd).contiguous(), persistent=False)

    @property
    def kind(self) -> str:  # type: ignore[override]
        return {"cpu-kernel": f"int4 CPU kernel up to {self.cpu_kernel_max_rows} rows, dequantized per layer above",
                "cuda-kernel": "int4 CUDA kernel",
                "planar": "int4 codes, dequantized per layer into a dense GEMM"}[self.layout]

    def codes_t(self) -> torch.Tensor:
        """The codes transposed, (K, N) uint8, in the scratch buffer (CPU-kernel and planar layouts)."""
        out = SCRATCH.get("codes", (self.in_features, self.out_features), torch.uint8, self.packed.device)
        if self.layout == "cpu-kernel":
            return unpack_int4_cpu(self.packed, self.out_features, self.in_features, out)
        return unpack_int4_planar(self.packed, out)

    def weight_t(self, dtype: torch.dtype) -> torch.Tensor:
        if self.layout == "cuda-kernel":
            # CUDA's layout is intricate: the kernel dequantizes it, through an identity matrix
            # (exact: one product per output). Forward never needs this (bf16 goes to the kernel).
            eye = torch.eye(self.in_features, dtype=self.scale_zeros.dtype, device=self.packed.device)
            return self._kernel(eye).to(dtype)
        if self.layout == "cpu-kernel":
            sz = self.scale_zeros.float()
            pd = _param_dtype(dtype)
            s = sz[..., 0].unsqueeze(1).to(pd)  # (G, 1, N)
            b = (sz[..., 1] - 8 * sz[..., 0]).unsqueeze(1).to(pd)  # b = zero - 8 s, exact in fp32
            return _affine_dequant_t(self.codes_t(), s, b, self.group_size, dtype)
        return _affine_dequant_t(self.codes_t(), self.scales, self.biases, self.group_size, dtype)

    def _kernel(self, x2: torch.Tensor) -> torch.Tensor:
        if self.layout == "cpu-kernel":
            return torch._weight_int4pack_mm_for_cpu(x2, self.packed, self.group_size, self.scale_zeros)
        return torch._weight_int4pack_mm(x2, self.packed, self.group_size, self.scale_zeros)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // self.in_features
        use_kernel = self.layout != "planar" and x.dtype == self.scale_zeros.dtype and (
            self.layout == "cuda-kernel" or (self.layout == "cpu-kernel" and rows <= self.cpu_kernel_max_rows))
        if use_kernel:
            y = self._kernel(x.reshape(rows, self.in_features))
            return y.view(*x.shape[:-1], self.out_features)
        return self._dense(x)


class BF16Linear(Linear):
    """A Linear whose weight is kept in bf16 (mxfp4 dequantized at load: exact in bf16, half of
    fp32's memory); a model computing in another dtype casts the weight per call."""

    def pack(self) -> bool:
        return False  # packed for bf16 inputs only; `install` packs it when the model computes in bf16

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.packed is not None or x.dtype == self.weight.dtype:
            return super().forward(x)
        return F.linear(x, self.weight.to(x.dtype))


class QuantizedEmbedding(nn.Module):
    """Token embedding kept packed; `forward` gathers the rows used, then dequantizes them (fp32,
    then the compute dtype: the same values as dequantizing the whole table first)."""

    def __init__(self, packed: torch.Tensor, scales: torch.Tensor, biases: torch.Tensor | None, p: dict[str, Any],
                 dtype: torch.dtype):
        super().__init__()
        self.mode, self.bits, self.group_size = p["mode"], int(p["bits"]), int(p["group_size"])
        self.num_embeddings = packed.shape[0]
        self.embedding_dim = packed.shape[1] * 32 // self.bits
        self.dtype = dtype
        # Indexing needs a full torch dtype: int32 has uint32's bits.
        self.register_buffer("packed", packed.contiguous().view(torch.int32).clone(), persistent=False)
        self.register_buffer("scales", scales.contiguous().clone(), persistent=False)
        self.register_buffer("biases", None if biases is None else biases.contiguous().clone(), persistent=False)

    def logical_params(self) -> int:
        return self.num_embeddings * self.embedding_dim

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        flat = ids.reshape(-1)
        rows = dequantize_tensor_torch(self.packed[flat], self.scales[flat],
                                       None if self.biases is None else self.biases[flat],
                                       self.mode, self.bits, self.group_size)  # (n, H) fp32
        return rows.to(self.dtype).view(*ids.shape, self.embedding_dim)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, {self.mode} {self.bits}-bit, group_size={self.group_size}"


class NarrowEmbedding(nn.Module):
    """An unquantized token embedding kept in the file's narrower dtype (bf16) when the model
    computes in fp32: gathered rows are cast exactly, and a 4-bit build on an fp32 machine does not
    hold a 264 MB fp32 table for its 132 MB of bf16."""

    def __init__(self, weight: torch.Tensor, dtype: torch.dtype):
        super().__init__()
        self.num_embeddings, self.embedding_dim = weight.shape
        self.dtype = dtype
        self.register_buffer("weight", weight.contiguous().clone(), persistent=False)

    def logical_params(self) -> int:
        return self.num_embeddings * self.embedding_dim

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.weight).to(self.dtype)


# -- building a model ------------------------------------------------------------------------------


def int4_layout(n: int, k: int, group_size: int, dtype: torch.dtype, device: torch.device) -> str:
    """The layout a 4-bit layer keeps, from the device, the compute dtype and the kernels' shape rules."""
    if group_size in INT4_GROUP_SIZES and dtype in INT4_KERNEL_DTYPES.get(device.type, ()):
        block = cpu_int4_block() if device.type == "cpu" else None
        if block and n % block == 0:
            return "cpu-kernel"
        if device.type == "cuda" and n % 8 == 0 and k % 32 == 0 and _cuda_sm80(device):
            return "cuda-kernel"
    return "planar"


def _cuda_sm80(device: torch.device) -> bool:
    """tinygemm's CUDA kernel needs compute capability 8.0 (A100, H100, ...)."""
    try:
        return torch.cuda.get_device_capability(device) >= (8, 0)
    except (AssertionError, RuntimeError):  # no CUDA here: the layout is only being asked about
        return True


def _inner_k_tiles(k: int) -> int:
    return next(t for t in (8, 4, 2) if k % (16 * t) == 0)


def check_packed(packed: torch.Tensor, scales: torch.Tensor, biases: torch.Tensor | None, bits: int,
                 group_size: int) -> tuple[int, int]:
    """(out, in) of a packed weight whose scales / biases fit it; a CheckpointError otherwise."""
    if packed.dtype not in (torch.uint32, torch.int32) or packed.ndim != 2:
        raise CheckpointError(f"a quantized weight must be 2-d uint32, got {packed.dtype} {tuple(packed.shape)}")
    n, k = packed.shape[0], packed.shape[1] * 32 // bits
    for name, t in (("scales", scales), ("biases", biases)):
        if t is not None and tuple(t.shape) != (n, k // group_size):
            raise CheckpointError(f"{name} {tuple(t.shape)} do not fit a packed {n}x{k} weight in groups of {group_size}")
    return n, k


def make_linear(packed: torch.Tensor, scales: torch.Tensor, biases: torch.Tensor | None, p: dict[str, Any],
                dtype: torch.dtype, device: torch.device) -> nn.Module:
    """One quantized module's tensors (as in the file) -> the layer that runs it here."""
    mode, bits, gs = p["mode"], int(p["bits"]), int(p["group_size"])
    n, k = check_packed(packed, scales, biases, bits, gs)
    if mode == "affine" and biases is not None and k % gs == 0 and n % 2 == 0 and bits in (4, 8):
        codes = mlx_codes(packed, bits).to(device)
        scales, biases = scales.to(device), biases.to(device)
        if bits == 8:
            return Int8Linear(codes, scales, biases, gs, dtype)
        layout = int4_layout(n, k, gs, dtype, device)
        return Int4Linear(codes, scales, biases, gs, dtype, layout,
                          _inner_k_tiles(k) if layout == "cuda-kernel" else 8)
    # mxfp4 (exact in bf16), or a shape no native path takes (then in the compute dtype, as the
    # dequantize-then-matmul path would).
    w = dequantize_tensor_torch(packed, scales, biases, mode, bits, gs)
    keep = torch.bfloat16 if mode == "mxfp4" else dtype
    layer = BF16Linear(k, n, bias=False, device="meta")
    layer.weight = nn.Parameter(w.to(device=device, dtype=keep), requires_grad=False)
    return layer


def install(model: nn.Module, weights: dict[str, torch.Tensor], quantization: dict[str, Any],
            dtype: torch.dtype, device: torch.device) -> dict[str, int]:
    """Swap every quantized module of `model` (built on the meta device) for its native layer,
    taking its tensors out of `weights`. Returns how many layers run each way."""
    params = module_params(weights, quantization)
    kinds: dict[str, int] = {}
    for path, p in params.items():
        packed = weights.pop(path + ".weight", None)
        scales = weights.pop(path + ".scales")
        biases = weights.pop(path + ".biases", None)
        if packed is None:
            raise CheckpointError(f"{path}.scales has no {path}.weight beside it")
        try:
            old = model.get_submodule(path)
        except AttributeError:
            raise CheckpointError(f"the checkpoint quantizes {path!r}, which this model does not have") from None
        if isinstance(old, nn.Embedding):
            check_packed(packed, scales, biases, int(p["bits"]), int(p["group_size"]))
            new: nn.Module = QuantizedEmbedding(packed.to(device), scales.to(device),
                                                None if biases is None else biases.to(device), p, dtype)
            if (new.num_embeddings, new.embedding_dim) != (old.num_embeddings, old.embedding_dim):
                raise CheckpointError(f"{path} is {new.num_embeddings}x{new.embedding_dim}, expected "
                                      f"{old.num_embeddings}x{old.embedding_dim}")
            kind = f"embedding: {p['mode']} {p['bits']}-bit, rows dequantized as gathered"
        elif isinstance(old, nn.Linear):
            new = make_linear(packed, scales, biases, p, dtype, device)
            if (new.in_features, new.out_features) != (old.in_features, old.out_features):
                raise CheckpointError(f"{path} is {new.out_features}x{new.in_features}, expected "
                                      f"{old.out_features}x{old.in_features}")
            if isinstance(new, BF16Linear):
                kind = f"{p['mode']} {p['bits']}-bit, dequantized at load to {str(new.weight.dtype).split('.')[-1]}"
                if dtype == new.weight.dtype and new.weight.device.type == "cpu":
                    Linear.pack(new)
            else:
                kind = f"{p['mode']} {p['bits']}-bit: {new.kind}"
        else:
            raise CheckpointError(f"the checkpoint quantizes {path!r}, a {type(old).__name__}")
        parent, _, child = path.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, new)
        kinds[kind] = kinds.get(kind, 0) + 1
    emb = weights.get("model.embed_tokens.weight")
    if emb is not None and emb.dtype in (torch.bfloat16, torch.float16) and dtype == torch.float32:
        model.model.embed_tokens = NarrowEmbedding(weights.pop("model.embed_tokens.weight").to(device), dtype)
        kinds[f"embedding: kept in {str(emb.dtype).split('.')[-1]}, rows cast as gathered"] = 1
    return kinds


def execution_mode(model: nn.Module) -> str:
    """"native int4", "native int8", "native int4 + int8", or how the rest were dequantized."""
    native = sorted({"int4" if isinstance(m, Int4Linear) else "int8"
                     for m in model.modules() if isinstance(m, (Int4Linear, Int8Linear))})
    loaded = sorted({str(m.weight.dtype).split(".")[-1] if m.weight is not None else "bfloat16"
                     for m in model.modules() if isinstance(m, BF16Linear)})
    parts = (["native " + " + ".join(native)] if native else []) + [f"dequantized at load to {d}" for d in loaded]
    return ", ".join(parts) or "float"


def scratch_bytes(model: nn.Module, dtype: torch.dtype) -> int:
    """Most bytes the per-thread scratch holds while `model` runs: its largest layer dequantized
    (in fp32 first for fp16 models) plus, for 4-bit, that layer's unpacked codes."""
    size = torch.tensor([], dtype=_param_dtype(dtype)).element_size()
    out = 0
    for m in model.modules():
        if isinstance(m, QuantizedLinear):
            n = m.in_features * m.out_features
            out = max(out, n * size + (n if isinstance(m, Int4Linear) else 0))
    return out


def resident_weight_bytes(model: nn.Module) -> int:
    """Bytes of every parameter and buffer, each storage counted once and whole (a view of a larger
    storage counts all of it), plus oneDNN-packed weights (opaque: counted as elements x size)."""
    seen: set[int] = set()
    total = 0
    for t in list(model.parameters()) + list(model.buffers()):
        if t.device.type == "meta":
            continue
        try:
            st = t.untyped_storage()
        except (NotImplementedError, RuntimeError):
            total += t.numel() * t.element_size()
            continue
        if st.data_ptr() not in seen:
            seen.add(st.data_ptr())
            total += st.nbytes()
    for m in model.modules():
        packed = getattr(m, "packed", None)
        if isinstance(m, Linear) and packed is not None:
            total += packed.numel() * packed.element_size()
    return total
