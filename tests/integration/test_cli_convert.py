"""`lfm-colbert convert` and `lfm-colbert verify` end to end, through the CLI entry point."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("mlx.core")
pytest.importorskip("torch")

from lfm_colbert.cli import main  # noqa: E402


@pytest.fixture(scope="module")
def source(tmp_path_factory, real_tokenizer_file):
    from lfm_colbert.synthetic import write_checkpoint

    return write_checkpoint(tmp_path_factory.mktemp("cli-src"), size="tiny", dtype="bfloat16",
                            tokenizer_file=real_tokenizer_file, seed=5)


def test_convert_then_verify(source, tmp_path, capsys):
    out = tmp_path / "q8"
    assert main(["convert", str(source), str(out), "--precision", "8bit", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["precision"] == "8bit" and result["quantization"]["bits"] == 8
    assert result["weights_bytes"] == (out / "model.safetensors").stat().st_size
    assert result["fidelity"]["passed"] and result["fidelity"]["worst"] > 0.98

    report = tmp_path / "report.json"
    assert main(["verify", str(out), "--reference", str(source), "--output", str(report)]) == 0
    text = capsys.readouterr().out
    for row in ("short prompts", "queries", "passage", "all", "PASS"):
        assert row in text
    data = json.loads(report.read_text())
    assert data["precision"] == "8bit" and data["backend"] == "torch" and data["passed"]
    assert data["worst"] == pytest.approx(result["fidelity"]["worst"])

    # An impossible threshold fails with exit code 1 and says so.
    assert main(["verify", str(out), "--reference", str(source), "--min-cosine", "0.9999999",
                 "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["passed"] is False


def test_verify_on_mlx(source, tmp_path, capsys):
    out = tmp_path / "mx"
    assert main(["convert", str(source), str(out), "--precision", "mxfp4", "--no-verify"]) == 0
    assert "Not measured" in (out / "README.md").read_text()
    capsys.readouterr()
    reports = {}
    for backend in ("mlx", "torch"):
        assert main(["verify", str(out), "--reference", str(source), "--backend", backend, "--min-cosine", "0.1",
                     "--json"]) == 0
        reports[backend] = json.loads(capsys.readouterr().out)
    assert reports["mlx"]["backend"] == "mlx" and reports["mlx"]["precision"] == "mxfp4"
    # MLX (dequantized with mx.dequantize on the CPU) and PyTorch (its own unpacking) measure the file alike.
    assert reports["mlx"]["worst"] == pytest.approx(reports["torch"]["worst"], abs=1e-3)
    assert reports["mlx"]["worst"] < 0.999  # mxfp4 does move the vectors


@pytest.mark.parametrize("argv,match", [
    (["--precision", "2bit"], "unknown precision"),
    (["--precision", "4bit", "--group-size", "128"], "does not divide"),
])
def test_convert_errors_exit_2(source, tmp_path, capsys, argv, match):
    out = tmp_path / "bad"
    assert main(["convert", str(source), str(out), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and match in err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_convert_refuses_existing_out(source, tmp_path, capsys):
    (tmp_path / "out").mkdir()
    assert main(["convert", str(source), str(tmp_path / "out")]) == 2
    assert "--force" in capsys.readouterr().err


def test_verify_refuses_a_different_model(source, tiny_causal_checkpoint, capsys):
    assert main(["verify", str(source), "--reference", str(tiny_causal_checkpoint)]) == 2
    assert "different models" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["convert", "verify"])
def test_help_teaches_with_examples(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "examples:" in text and f"lfm-colbert {command}" in text
