"""The kernel plan: chosen from the CPU's flags and torch, forced portable or int8 by LFM_COLBERT_CPU."""

from __future__ import annotations

import pytest

from lfm_colbert import cpu


def test_portable_forces_float32_from_float16(monkeypatch):
    monkeypatch.setenv(cpu.ENV, "portable")
    p = cpu.plan()
    assert (p.mode, p.dtype, p.copy_dtype) == ("portable", "float32", "float16")
    assert "forced" in p.describe() and p.to_dict()["summary"] == p.describe()


def test_auto_uses_bfloat16_exactly_when_the_cpu_has_it(monkeypatch):
    monkeypatch.delenv(cpu.ENV, raising=False)
    torch = pytest.importorskip("torch")
    _, flags = cpu.cpu_flags()
    native = torch.ops.mkldnn._is_mkldnn_bf16_supported() and (not flags or bool(flags & {"avx512_bf16", "amx_bf16", "bf16", "svebf16"}))
    x86 = "avx2" in flags if flags else cpu.platform.machine().lower() in ("x86_64", "amd64")
    assert cpu.plan().dtype == ("bfloat16" if native else "int8" if x86 and cpu._int8_works(torch) else "float32")


@pytest.mark.parametrize("flags, machine, dtype", [
    ({"avx", "avx2", "fma", "f16c"}, "x86_64", "int8"),  # AVX2-only x86: oneDNN's int8 GEMM
    ({"avx2", "avx512f", "avx512_vnni"}, "x86_64", "int8"),  # AVX-512 without BF16
    ({"avx", "sse4_2"}, "x86_64", "float32"),  # no AVX2
    ({"asimd", "asimdhp"}, "aarch64", "float32"),  # NEON without BF16: int8 there is not measured
])
def test_a_cpu_without_bf16_flags_gets_int8_on_x86_else_float32(monkeypatch, flags, machine, dtype):
    torch = pytest.importorskip("torch")
    if dtype == "int8" and not cpu._int8_works(torch):
        pytest.skip("this torch has no CPU int8 matmul")
    monkeypatch.delenv(cpu.ENV, raising=False)
    monkeypatch.setattr(cpu, "cpu_flags", lambda: ("test CPU", flags))
    monkeypatch.setattr(cpu.platform, "machine", lambda: machine)
    monkeypatch.setattr(cpu, "_bf16_native", lambda *a: False)  # torch's own check sees the real CPU
    cpu._plan.cache_clear()
    try:
        p = cpu.plan()
        copy = {"int8": "int8", "float32": "float16"}[dtype]
        assert (p.mode, p.dtype, p.copy_dtype, p.cpu) == ("native", dtype, copy, "test CPU")
    finally:
        cpu._plan.cache_clear()


def test_int8_can_be_forced_on_any_cpu(monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setenv(cpu.ENV, "int8")
    p = cpu.plan()
    if not cpu._int8_works(torch):
        assert p.dtype == "float32"  # where torch cannot, the float32 path
        return
    assert (p.mode, p.dtype, p.copy_dtype) == ("int8", "int8", "int8") and "forced" in p.describe()


def test_bad_setting_is_refused(monkeypatch):
    monkeypatch.setenv(cpu.ENV, "fastest")
    with pytest.raises(ValueError, match="LFM_COLBERT_CPU"):
        cpu.plan()


@pytest.mark.parametrize("flags, machine, isa", [
    ({"avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16"}, "x86_64", "amx_bf16"),
    ({"avx2", "fma", "avx512f"}, "x86_64", "avx512f"),
    ({"asimd", "asimdhp", "sve", "bf16"}, "aarch64", "bf16"),
    ({"asimd"}, "aarch64", "neon"),
])
def test_best_isa_names(flags, machine, isa):
    assert cpu.best_isa(flags, machine) == isa
