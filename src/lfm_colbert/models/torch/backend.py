"""Runs the PyTorch model on token ids: weights loading, dtype and device choice."""

from __future__ import annotations

import logging

import numpy as np
import torch

from lfm_colbert.checkpoint import Checkpoint, validate_shapes
from lfm_colbert.errors import CheckpointError, InputError
from lfm_colbert.models.torch.cpu import cpu_features
from lfm_colbert.models.torch.lfm2 import Model, RoPE, pack_linears

logger = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def default_device() -> str:
    if torch.cuda.is_available():
        return "cuda"
    return "cpu"


def parse_device(device: str) -> torch.device:
    """A torch.device that exists on this machine, or an InputError that says what does."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(f"unknown device {device!r}: use cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise InputError(f"device {device!r} asked for, but this PyTorch has no CUDA device")
        if dev.index is not None and dev.index >= count:
            raise InputError(f"device {device!r} asked for, but this machine has {count} CUDA device(s)")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"device {device!r} asked for, but Metal (MPS) is not available to this PyTorch")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise InputError(f"device {device!r} is not supported: use cpu, cuda, cuda:N or mps")
    return dev


def default_dtype(device: str) -> str:
    """bf16 where the hardware runs it natively, else fp32."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    if dev.type == "cpu":
        return "bfloat16" if cpu_features().bf16 else "float32"
    return "float32"


class TorchBackend:
    """Args: ckpt; dtype "float32" | "bfloat16" | "float16" (None: bf16 where native, see cpu.py);
    device; dequantize: run a quantized checkpoint as float weights dequantized at load instead of
    natively (None / False: natively, see quant.py; True: as before this option, the fastest on a
    CPU whose bf16 matmuls outrun the int kernels, at 2-4x the memory)."""

    name = "torch"

    def __init__(self, ckpt: Checkpoint, dtype: str | None = None, device: str | None = None,
                 dequantize: bool | None = None):
        self.device = parse_device(device or default_device())
        dtype = dtype or default_dtype(str(self.device))
        if dtype not in DTYPES:
            raise InputError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
        self.dtype_name, self.dtype = dtype, DTYPES[dtype]
        self.quantization = ckpt.quantization
        self.native = bool(self.quantization) and not dequantize
        self.file_bytes = sum(f.stat().st_size for _, f in ckpt.weight_files)
        validate_shapes(ckpt)
        weights = Model.sanitize(load_weights(ckpt, dequantize=not self.native))
        with torch.device("meta"):
            model = Model(ckpt.args)
        self.layers: dict[str, int] = {}
        self.quantized_paths: set[str] = set()
        if self.native:
            from lfm_colbert.models.torch.quant import install
            from lfm_colbert.quantization import module_params

            self.quantized_paths = set(module_params(weights, self.quantization))
            self.layers = install(model, weights, self.quantization, self.dtype, self.device)
        self.narrow = {"embed_tokens"} if any(k.startswith("embedding: kept") for k in self.layers) else set()
        for name, w in weights.items():
            weights[name] = w.to(device=self.device, dtype=self.dtype)
        try:
            missing, unexpected = model.load_state_dict(weights, strict=False, assign=True)
        except RuntimeError as exc:  # wrong shapes in a file validate_shapes could not check (quantized)
            raise CheckpointError(f"{ckpt.path}: the weights do not fit the model: {str(exc)[:500]}") from None
        # Layers swapped in by `install` carry their own tensors.
        missing = [k for k in missing if k.rpartition(".")[0] not in self.quantized_paths
                   and not (k == "model.embed_tokens.weight" and "embed_tokens" in self.narrow)]
        if missing or unexpected:
            raise CheckpointError(f"{ckpt.path}: missing tensors {missing[:5]}, unexpected {unexpected[:5]}")
        # Non-persistent buffers are not in the file: rebuild them on the real device.
        model.model.rope = RoPE(ckpt.args.head_dim, ckpt.args.rope_theta).to(self.device)
        self.model = model.eval()
        if self.native and self.device.type == "cpu":
            # Big batches dequantize each layer once per call: twice the rows per call halves that
            # cost (bench/encode.py's docs rows, with both sizes).
            self.cpu_tokens_per_call = self.quantized_cpu_tokens_per_call
        if self.device.type == "cpu" and pack_linears(model):
            # The tensors left unpacked can be views of the whole loaded file, which would then stay
            # resident next to the packed copies (+550 MiB in bf16): give them their own storage.
            for p in model.parameters():
                p.data = p.data.clone()

    def execution(self) -> dict:
        """How the weights run here and what they occupy (JSON-able; `ColBERT.describe()`)."""
        from lfm_colbert.models.torch.quant import execution_mode, resident_weight_bytes, scratch_bytes

        if not self.quantization:
            mode = f"float ({self.dtype_name})"
        elif not self.native:
            mode = f"dequantized at load to {self.dtype_name}"
        else:
            mode = execution_mode(self.model)
        out = {"mode": mode, "device": str(self.device), "compute_dtype": self.dtype_name,
               "resident_weight_bytes": resident_weight_bytes(self.model), "file_bytes": self.file_bytes}
        if self.layers:
            out["layers"] = dict(self.layers)
            # Beside the weights: one layer dequantized at a time, per encoding thread.
            out["scratch_bytes_per_thread"] = scratch_bytes(self.model, self.dtype)
        if self.device.type == "cpu":
            out["cpu"] = cpu_features().describe()
        return out

    # On the CPU, rows go through the model about 1,024 tokens at a time: a whole 32 x 256 batch's
    # (B*S, F) intermediates outgrow the caches and each op faults in fresh pages, which costs
    # 20% of throughput. Rows are independent, so the outputs are the same bit for bit.
    cpu_tokens_per_call = 1024
    quantized_cpu_tokens_per_call = 2048

    @torch.inference_mode()
    def forward(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """(B, S) ids and mask -> (B, S, 128) float32 L2-normalised vectors."""
        ids = torch.from_numpy(input_ids).to(self.device)
        mask = torch.from_numpy(attention_mask).to(self.device)
        B, S = ids.shape
        rows = max(1, self.cpu_tokens_per_call // max(S, 1)) if self.device.type == "cpu" else B
        out = np.empty((B, S, self.model.args.out_features), dtype=np.float32)
        for s in range(0, B, rows):
            out[s : s + rows] = self.model(ids[s : s + rows], mask[s : s + rows]).cpu().numpy()  # (rows, S, 128)
        return out


def load_weights(ckpt: Checkpoint, dequantize: bool = True) -> dict[str, torch.Tensor]:
    """All tensors of the checkpoint as torch tensors; an MLX-quantized one's dequantized to fp32
    unless `dequantize=False` (then packed, as in the file)."""
    from safetensors.torch import load_file

    weights: dict[str, torch.Tensor] = {}
    for prefix, file in ckpt.weight_files:
        try:
            weights.update({prefix + k: v for k, v in load_file(file).items()})
        except Exception as exc:
            raise CheckpointError(f"cannot read {file}: {exc}") from None
    if ckpt.quantization and dequantize:
        from lfm_colbert.quantization import dequantize_torch

        weights = dequantize_torch(weights, ckpt.quantization)
    return weights
