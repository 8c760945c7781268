"""What the CPU multiplies natively, decided once per process: the MaxSim kernel's dtype and engine.

    native     bfloat16 matmuls where the CPU has them in hardware (x86 AVX-512 BF16 or AMX-BF16;
               ARM BF16 / SVE with BF16), through oneDNN; on other x86 CPUs (AVX2, AVX-512 without
               BF16), where a bfloat16 matmul is emulated and several times slower, int8 matmuls
               (torch._int_mm: oneDNN's integer GEMM, 1.9x float32's rate capped at AVX2, 3.5x with
               AVX-512 in bench/search.py); float32 elsewhere (NEON without BF16, no torch)
    portable   float32 whatever the CPU (LFM_COLBERT_CPU=portable)
    int8       the int8 scan whatever the CPU (LFM_COLBERT_CPU=int8): what AVX2-only machines take,
               forced so that tests and benchmarks cover it on any machine

float32 matmuls go through oneDNN when torch has it (on AMD CPUs torch's default float32 GEMM, MKL,
ran at 40 % of oneDNN's rate in bench/search.py), else through torch or numpy.
"""

from __future__ import annotations

import functools
import os
import platform
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENV = "LFM_COLBERT_CPU"
MODES = ("auto", "native", "portable", "int8")

# Flags that name a native 16-bit matmul, as /proc/cpuinfo spells them.
_X86_BF16 = ("amx_bf16", "avx512_bf16")
_ARM_BF16 = ("bf16", "svebf16")


@dataclass(frozen=True)
class KernelPlan:
    """The MaxSim kernel's choices. `dtype` is what the scan multiplies in; `copy_dtype` what its
    memory-mapped scan copy holds (bfloat16 for a bfloat16 scan; float16, the stored precision,
    for a float32 one; int8 codes and scales for an int8 one); `matmul` the float32 GEMM engine
    (float32 rescoring, rerank and evaluation use it in every plan; int8 goes through torch._int_mm)."""

    mode: str  # "native", "portable" or "int8" (the last two forced)
    dtype: str  # "bfloat16", "int8" or "float32"
    copy_dtype: str  # "bfloat16", "int8" or "float16"
    matmul: str  # "onednn", "torch" or "numpy"
    isa: str  # the best instruction set found, e.g. "avx512_bf16", "amx_bf16", "avx2", "neon"
    cpu: str  # the CPU's model name, when known

    def describe(self) -> str:
        return f"{self.dtype} {self.matmul} matmul, {self.isa} ({self.mode}{', forced' if self.forced else ''})"

    @property
    def forced(self) -> bool:
        return os.environ.get(ENV, "auto").strip().lower() in ("portable", "int8")

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "dtype": self.dtype, "copy_dtype": self.copy_dtype, "matmul": self.matmul,
                "isa": self.isa, "cpu": self.cpu, "summary": self.describe()}


def cpu_flags() -> tuple[str, set[str]]:
    """(model name, feature flags) from /proc/cpuinfo on Linux; elsewhere (model from platform, no flags)."""
    path = Path("/proc/cpuinfo")
    name, flags = platform.processor() or platform.machine(), set()
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return name, flags
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "cpu model") and value.strip():
            name = value.strip()
        elif key in ("flags", "features"):  # x86 / ARM
            flags.update(value.split())
    return name, flags


def best_isa(flags: set[str], machine: str | None = None) -> str:
    """The most capable relevant instruction set among `flags` (x86 or ARM), for reports."""
    machine = (machine or platform.machine()).lower()
    if machine in ("arm64", "aarch64") or "asimd" in flags:
        for isa in ("svebf16", "bf16", "sve2", "sve", "asimdhp", "asimd"):
            if isa in flags:
                return {"asimd": "neon", "asimdhp": "neon-fp16"}.get(isa, isa)
        return "arm64"
    for isa in ("amx_bf16", "avx512_bf16", "avx512f", "avx2", "avx", "sse4_2"):
        if isa in flags:
            return isa
    return machine or "unknown"


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        return None
    return torch


def _onednn_linear_works(torch: Any) -> bool:
    """Whether torch exposes oneDNN's linear for dense float32 tensors, giving torch's own result."""
    op = getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)
    if op is None or not torch.backends.mkldnn.is_available():
        return False
    try:
        x = torch.arange(24, dtype=torch.float32).reshape(6, 4) / 7
        w = torch.arange(12, dtype=torch.float32).reshape(3, 4) / 5
        return bool(torch.allclose(op(x, w, None, "none", [], ""), x @ w.T, rtol=1e-6, atol=1e-6))
    except Exception:  # a private op: any failure means "not here"
        return False


def _bf16_native(torch: Any, flags: set[str], machine: str) -> bool:
    """oneDNN runs bfloat16 matmuls in hardware: torch says so, and the CPU flags (when readable) agree."""
    try:
        if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            return False
    except Exception:
        return False
    if not flags:  # no /proc/cpuinfo (macOS, Windows): trust torch's own check
        return True
    wanted = _ARM_BF16 if machine in ("arm64", "aarch64") else _X86_BF16
    return any(f in flags for f in wanted)


def mode_from_env() -> str:
    mode = os.environ.get(ENV, "auto").strip().lower() or "auto"
    if mode not in MODES:
        raise ValueError(f"{ENV}={os.environ.get(ENV)!r}: use one of {', '.join(MODES)}")
    return mode


def _int8_works(torch: Any) -> bool:
    """Whether torch multiplies int8 matrices on this CPU (torch._int_mm), exactly."""
    op = getattr(torch, "_int_mm", None)
    if op is None:
        return False
    try:
        a = (torch.arange(32 * 16, dtype=torch.int32).reshape(32, 16) % 127 - 63).to(torch.int8)
        b = (torch.arange(16 * 8, dtype=torch.int32).reshape(16, 8) % 101 - 50).to(torch.int8)
        return bool(torch.equal(op(a, b), a.int() @ b.int()))
    except Exception:  # a private op: any failure means "not here"
        return False


@functools.lru_cache(maxsize=None)
def _plan(mode: str) -> KernelPlan:
    name, flags = cpu_flags()
    machine = platform.machine().lower()
    isa = best_isa(flags, machine) if flags else _torch_isa() or machine
    torch = _torch()
    if torch is None:
        return KernelPlan("portable" if mode == "portable" else "native", "float32", "float16", "numpy", isa, name)
    engine = "onednn" if _onednn_linear_works(torch) else "torch"
    if mode == "int8" and _int8_works(torch):
        return KernelPlan("int8", "int8", "int8", engine, isa, name)
    if mode in ("portable", "int8"):  # int8 forced where torch cannot: the float32 path
        return KernelPlan("portable", "float32", "float16", engine, isa, name)
    if _bf16_native(torch, flags, machine):
        return KernelPlan("native", "bfloat16", "bfloat16", "onednn", isa, name)
    # x86 without bfloat16 in hardware: oneDNN's int8 GEMM (AVX2 and up). ARM without BF16 keeps
    # float32: whether torch's int8 GEMM is fast there (dot-product instructions) is not measured.
    x86 = "avx2" in flags if flags else machine in ("x86_64", "amd64")
    if x86 and _int8_works(torch):
        return KernelPlan("native", "int8", "int8", engine, isa, name)
    return KernelPlan("native", "float32", "float16", engine, isa, name)


def _torch_isa() -> str | None:
    torch = _torch()
    if torch is None:
        return None
    try:
        return re.sub(r"\W", "", str(torch.backends.cpu.get_cpu_capability())).lower() or None
    except Exception:
        return None


def plan() -> KernelPlan:
    """The kernel plan for this process (LFM_COLBERT_CPU=portable forces float32, =int8 the int8
    scan); cached per mode."""
    mode = mode_from_env()
    return _plan(mode if mode in ("portable", "int8") else "auto")
