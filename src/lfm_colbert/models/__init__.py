"""The two backends. Each has a self-contained `lfm2.py` (the model) and a `backend.py` (the runner)."""

from __future__ import annotations

import importlib.util
import platform
import sys
from typing import Protocol

import numpy as np

from lfm_colbert.checkpoint import Checkpoint
from lfm_colbert.errors import InputError

BACKENDS = ("auto", "torch", "mlx")


class Backend(Protocol):
    name: str
    dtype_name: str

    def forward(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray: ...

    def execution(self) -> dict: ...


def is_apple_silicon() -> bool:
    return sys.platform == "darwin" and platform.machine() == "arm64"


def resolve_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise InputError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend != "auto":
        return backend
    if is_apple_silicon() and importlib.util.find_spec("mlx") is not None:
        return "mlx"
    if importlib.util.find_spec("torch") is not None:
        return "torch"
    if importlib.util.find_spec("mlx") is not None:
        return "mlx"
    raise InputError(
        "no backend installed: pip install 'lfm-colbert[torch]' (Linux, Windows, CUDA) "
        "or 'lfm-colbert[mlx]' (Apple Silicon)"
    )


def load_backend(ckpt: Checkpoint, backend: str = "auto", dtype: str | None = None, device: str | None = None,
                 dequantize: bool | None = None) -> Backend:
    """`dequantize`: run a quantized checkpoint on float weights dequantized at load (None: each
    backend's default, native where it has kernels; see models/torch/quant.py)."""
    name = resolve_backend(backend)
    if name == "torch":
        try:
            from lfm_colbert.models.torch.backend import TorchBackend
        except ImportError as exc:
            raise InputError(f"the torch backend needs PyTorch: pip install 'lfm-colbert[torch]' ({exc})") from None
        return TorchBackend(ckpt, dtype=dtype, device=device, dequantize=dequantize)
    try:
        from lfm_colbert.models.mlx.backend import MLXBackend
    except ImportError as exc:
        raise InputError(f"the mlx backend needs MLX: pip install 'lfm-colbert[mlx]' ({exc})") from None
    return MLXBackend(ckpt, dtype=dtype, device=device, dequantize=dequantize)
