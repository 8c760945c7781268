"""The kernel plan: chosen from the CPU's flags and torch, forced portable by LFM_COLBERT_CPU."""

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
    assert cpu.plan().dtype == ("bfloat16" if native else "float32")


def test_a_cpu_without_bf16_flags_gets_float32(monkeypatch):
    monkeypatch.delenv(cpu.ENV, raising=False)
    monkeypatch.setattr(cpu, "cpu_flags", lambda: ("AVX2-only test CPU", {"avx", "avx2", "fma", "f16c"}))
    cpu._plan.cache_clear()
    try:
        p = cpu.plan()
        assert (p.dtype, p.copy_dtype, p.isa, p.cpu) == ("float32", "float16", "avx2", "AVX2-only test CPU")
    finally:
        cpu._plan.cache_clear()


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
