"""Runs the MLX model on token ids: weights loading (plain or quantized), dtype and device choice."""

from __future__ import annotations

import logging

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from lfm_colbert.checkpoint import Checkpoint, validate_shapes
from lfm_colbert.errors import CheckpointError, InputError
from lfm_colbert.models.mlx.lfm2 import Model

logger = logging.getLogger(__name__)

DTYPES = {"float32": mx.float32, "bfloat16": mx.bfloat16, "float16": mx.float16}
DEVICES = ("gpu", "cpu")


def has_gpu() -> bool:
    """True where MLX has a GPU backend (Metal on Apple Silicon)."""
    try:
        return bool(mx.metal.is_available())
    except AttributeError:  # pragma: no cover - very old MLX
        return False


def default_dtype(device: str) -> str:
    """bf16 on the GPU; fp32 on the CPU, where MLX's bf16 kernels are ~20x slower than its fp32 BLAS path."""
    return "bfloat16" if device == "gpu" else "float32"


class MLXBackend:
    """Args: ckpt; dtype "float32" | "bfloat16" | "float16" (None: by device); device None | "gpu" | "cpu";
    dequantize: run a quantized checkpoint as dequantized float weights (None: on the CPU only, where
    MLX's quantized kernels are single-threaded and slow)."""

    name = "mlx"

    def __init__(
        self, ckpt: Checkpoint, dtype: str | None = None, device: str | None = None, dequantize: bool | None = None
    ):
        if device not in (None, *DEVICES):
            raise InputError(f"the mlx backend's device must be one of {DEVICES} (or None), got {device!r}")
        device = device or ("gpu" if has_gpu() else "cpu")
        if device == "gpu" and not has_gpu():
            raise InputError("device 'gpu' asked for, but this MLX has no GPU backend (MLX on Linux runs on the CPU)")
        self.device = mx.gpu if device == "gpu" else mx.cpu
        dtype = dtype or default_dtype(device)
        if dtype not in DTYPES:
            raise InputError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
        self.dtype_name, self.dtype = dtype, DTYPES[dtype]
        quant = self.quantization = ckpt.quantization
        self.dequantize = (device == "cpu") if dequantize is None else dequantize
        self.file_bytes = sum(f.stat().st_size for _, f in ckpt.weight_files)

        weights = Model.sanitize(load_weights(ckpt))
        model = Model(ckpt.args)
        if quant and self.dequantize:
            from lfm_colbert.quantization import dequantize_mlx

            weights = dequantize_mlx(weights, quant)
        elif quant:
            from lfm_colbert.quantization import module_params

            params = module_params(weights, quant)
            # Swap in QuantizedLinear / QuantizedEmbedding exactly where the converter packed weights.
            nn.quantize(model, class_predicate=lambda path, _: params.get(path, False))
        else:
            validate_shapes(ckpt)
        # Packed uint32 weights and uint8 (mxfp4) scales keep their dtype; floats take the compute dtype.
        weights = {k: w.astype(self.dtype) if mx.issubdtype(w.dtype, mx.floating) else w for k, w in weights.items()}
        try:
            model.load_weights(list(weights.items()), strict=True)
        except ValueError as exc:
            raise CheckpointError(f"{ckpt.path}: the weights do not fit the model: {exc}") from None
        model.eval()
        mx.eval(model.parameters())
        self.model = model

    def execution(self) -> dict:
        """How the weights run here and what they occupy (mirrors the PyTorch backend's)."""
        from mlx.utils import tree_flatten

        if not self.quantization:
            mode = f"float ({self.dtype_name})"
        elif self.dequantize:
            mode = f"dequantized at load to {self.dtype_name}"
        else:
            q = self.quantization
            mode = f"native MLX {q.get('mode', 'affine')} {q.get('bits')}-bit (QuantizedLinear / QuantizedEmbedding)"
        resident = sum(p.nbytes for _, p in tree_flatten(self.model.parameters()))
        return {"mode": mode, "device": "gpu" if self.device == mx.gpu else "cpu", "compute_dtype": self.dtype_name,
                "resident_weight_bytes": int(resident), "file_bytes": self.file_bytes}

    def forward(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """(B, S) ids and mask -> (B, S, 128) float32 L2-normalised vectors."""
        with mx.stream(self.device):
            out = self.model(mx.array(input_ids.astype(np.int32)), mx.array(attention_mask.astype(np.int32)))
            mx.eval(out)
        return np.array(out, copy=False).astype(np.float32, copy=False)


def load_weights(ckpt: Checkpoint) -> dict[str, mx.array]:
    """All tensors of the checkpoint as MLX arrays (bf16 stays bf16), names prefixed as in the file list."""
    weights: dict[str, mx.array] = {}
    for prefix, file in ckpt.weight_files:
        try:
            weights.update({prefix + k: v for k, v in mx.load(str(file)).items()})
        except Exception as exc:
            raise CheckpointError(f"cannot read {file}: {exc}") from None
    return weights
