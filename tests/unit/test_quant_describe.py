"""describe() and `lfm-colbert info` say how a quantized build runs and what it holds in memory."""

from __future__ import annotations

import pytest

pytest.importorskip("mlx.core")

from lfm_colbert import ColBERT  # noqa: E402
from lfm_colbert.cli import main  # noqa: E402
from lfm_colbert.convert import convert  # noqa: E402
from lfm_colbert.index import Index  # noqa: E402
from lfm_colbert.models.torch.lfm2 import param_count  # noqa: E402


@pytest.fixture(scope="module")
def eight_bit(tiny_checkpoint, tmp_path_factory):
    return convert(tiny_checkpoint, tmp_path_factory.mktemp("q") / "8bit", "8bit", verify=False).path


def test_describe_reports_mode_and_resident_bytes(eight_bit, tiny_checkpoint):
    native = ColBERT(eight_bit, backend="torch", dtype="bfloat16", device="cpu").describe()["execution"]
    assert native["mode"] == "native int8" and native["compute_dtype"] == "bfloat16"
    assert native["file_bytes"] == (eight_bit / "model.safetensors").stat().st_size
    assert 0 < native["resident_weight_bytes"] <= 1.15 * native["file_bytes"]
    assert sum(native["layers"].values()) == 1 + 4 * 5 + 2 * 7  # embedding + every backbone Linear
    loaded = ColBERT(eight_bit, backend="torch", dtype="bfloat16", device="cpu", dequantize=True).describe()["execution"]
    assert loaded["mode"] == "dequantized at load to bfloat16"
    assert loaded["resident_weight_bytes"] > 1.5 * native["resident_weight_bytes"]
    plain = ColBERT(tiny_checkpoint, backend="torch", dtype="float32", device="cpu").describe()["execution"]
    assert plain["mode"] == "float (float32)"


def test_param_count_sees_through_quantized_layers(eight_bit):
    native = ColBERT(eight_bit, backend="torch", dtype="float32", device="cpu")
    loaded = ColBERT(eight_bit, backend="torch", dtype="float32", device="cpu", dequantize=True)
    assert param_count(native.backend.model) == param_count(loaded.backend.model)


def test_mlx_backend_mirrors_the_execution_report(eight_bit):
    ex = ColBERT(eight_bit, backend="mlx").describe()["execution"]
    assert ex["mode"] == "dequantized at load to float32"  # MLX on Linux: CPU, dequantized by default
    assert ex["file_bytes"] == (eight_bit / "model.safetensors").stat().st_size and ex["resident_weight_bytes"] > 0


def test_info_prints_how_the_documents_were_encoded(eight_bit, tmp_path, capsys):
    model = ColBERT(eight_bit, backend="torch", dtype="bfloat16", device="cpu")
    index = Index(tmp_path / "idx", model)
    index.add(["Penguins live in the south.", "Cats sleep a lot."], ids=["p", "c"])
    index.close()
    assert main(["info", str(tmp_path / "idx")]) == 0
    out = capsys.readouterr().out
    assert "encoded    native int8 (bfloat16, cpu)" in out and "MB in memory" in out


def test_a_broken_quantized_file_gets_a_clear_error(eight_bit, tmp_path):
    import json
    import shutil

    from safetensors.torch import load_file, save_file

    from lfm_colbert.errors import CheckpointError

    bad = tmp_path / "bad"
    shutil.copytree(eight_bit, bad)
    weights = load_file(str(bad / "model.safetensors"))
    weights["model.layers.0.conv.in_proj.scales"] = weights["model.layers.0.conv.in_proj.scales"][:5].clone()
    save_file(weights, str(bad / "model.safetensors"))
    with pytest.raises(CheckpointError):
        ColBERT(bad, backend="torch", device="cpu")
    cfg = json.loads((bad / "config.json").read_text())
    cfg["quantization"]["quantized"].append("model.layers.0.no_such_proj")
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="disagree"):
        ColBERT(bad, backend="torch", device="cpu")
