"""What a newcomer meets first: --version, examples in every --help, JSON that means the same in every
command, no progress bars in logs, a vectors-only index described without 'None', convert's warning."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lfm_colbert import __version__
from lfm_colbert.cli import _COMMANDS, main


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"lfm-colbert {__version__}"


@pytest.mark.parametrize("command", _COMMANDS)
def test_every_command_has_examples(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = capsys.readouterr().out
    assert "examples:" in out and f"lfm-colbert {command}" in out.split("examples:")[1]


def test_a_vectors_only_index_is_described_and_refuses_text_in_cli_words(tmp_path, capsys, monkeypatch):
    from lfm_colbert.index import Index

    monkeypatch.delenv("LFM_COLBERT_MODEL", raising=False)
    index = Index(tmp_path / "v", {"dim": 8})
    index.add_vectors([np.ones((3, 8), np.float32)], ids=["a"])
    index.close()
    assert main(["info", str(tmp_path / "v")]) == 0
    out = capsys.readouterr().out
    assert "None" not in out and "none recorded (vectors added directly, dim 8)" in out
    assert main(["search", str(tmp_path / "v"), "x"]) == 2
    err = capsys.readouterr().err
    assert "--model" in err and "model=" in err and "pass model=" not in err


def test_no_progress_bars_when_output_is_not_a_terminal(tmp_path, tiny_checkpoint):
    (tmp_path / "docs").mkdir()
    for i in range(3):
        (tmp_path / "docs" / f"{i}.txt").write_text(f"document number {i}", encoding="utf-8")
    env = {**os.environ, "LFM_COLBERT_MODEL": str(tiny_checkpoint)}
    run = subprocess.run([sys.executable, "-m", "lfm_colbert", "index", str(tmp_path / "docs"), "--index", str(tmp_path / "i")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stderr == "" and "indexed 3 passages" in run.stdout


def test_convert_says_when_the_cosine_is_below_the_verify_threshold(tmp_path, capsys, monkeypatch):
    from lfm_colbert import convert as convert_module
    from lfm_colbert.convert import ConvertResult

    pytest.importorskip("mlx.core")
    fidelity = {"worst": 0.61, "mean": 0.9, "tokens": 100, "passed": False, "min_cosine": 0.9}
    monkeypatch.setattr(convert_module, "convert", lambda *a, **k: ConvertResult(Path(tmp_path), "4bit", 1, 2, None, fidelity))
    assert main(["convert", "src", str(tmp_path / "out"), "--precision", "4bit"]) == 0
    captured = capsys.readouterr()
    assert "warning: the worst per-token cosine 0.610000 is below 0.9, the 4bit threshold" in captured.err
    assert main(["convert", "src", str(tmp_path / "out"), "--precision", "4bit", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["fidelity"]["passed"] is False and "below 0.9" in captured.err
