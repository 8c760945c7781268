"""What this CPU runs natively, as PyTorch sees it, and a switch that forces the portable choice.

Some machines have AVX-512 BF16 (bf16 matmuls run natively, 2x fp32's rate); others are
AVX2-only, where oneDNN emulates bf16 and the encoder's default dtype is fp32. Every dtype and
kernel choice in the PyTorch backend goes through `cpu_features()`, so setting
`LFM_COLBERT_CPU=portable` (the switch the MaxSim kernel obeys too, lfm_colbert.cpu) makes an
AVX-512 machine take the AVX2 machine's choices (tests run both paths on one machine);
`LFM_COLBERT_PORTABLE_CPU=1` is an older name for it. To also run ATen's and oneDNN's own AVX2 code, for timing, set
`ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2` as well.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from lfm_colbert.cpu import ENV as CPU_ENV

PORTABLE_ENV = "LFM_COLBERT_PORTABLE_CPU"  # the older name of LFM_COLBERT_CPU=portable


@dataclass(frozen=True)
class CPUFeatures:
    isa: str  # ATen's dispatch level: "AVX512", "AVX2", "DEFAULT", ...
    bf16: bool  # bf16 matmuls run natively (oneDNN says so)
    portable: bool  # LFM_COLBERT_CPU=portable forced the portable (AVX2-class) choices

    def describe(self) -> str:
        s = f"{self.isa}, {'native' if self.bf16 else 'no native'} bf16"
        return s + (f" ({CPU_ENV}=portable: portable choices)" if self.portable else "")


def portable_forced() -> bool:
    if os.environ.get(CPU_ENV, "").strip().lower() == "portable":
        return True
    return os.environ.get(PORTABLE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def cpu_features() -> CPUFeatures:
    """Read each time (cheap), so the switch can be flipped by tests without reloading modules."""
    try:
        isa = str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):  # pragma: no cover - very old torch
        isa = "unknown"
    forced = portable_forced()
    return CPUFeatures(isa="AVX2" if forced and isa.startswith("AVX512") else isa,
                       bf16=not forced and _mkldnn_bf16(), portable=forced)


def _mkldnn_bf16() -> bool:
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def capabilities_line() -> str:
    """The CPU flags that decide speed here, from /proc/cpuinfo where it exists (benchmark headers)."""
    flags: set[str] = set()
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
                elif line.startswith("model name") and not model:
                    model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    keep = sorted(f for f in flags if f in ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni",
                                            "amx_bf16", "amx_int8", "avx512_fp16"))
    feats = cpu_features()
    return (f"{model or 'CPU'}; flags: {' '.join(keep) or 'unknown'}; torch dispatch {feats.isa}, "
            f"bf16 {'native' if feats.bf16 else 'emulated (default dtype fp32)'}"
            + ("; portable choices forced" if feats.portable else ""))
