"""The integration examples under examples/ run as written (on the tiny synthetic model) and print what
the index itself finds."""

from __future__ import annotations

import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

ROW = re.compile(r"^\s+(-?\d+\.\d+)\s+(\S+)", re.M)


def _run(monkeypatch, capsys, name: str, *args: str) -> str:
    monkeypatch.setattr(sys, "argv", [name, *args])
    runpy.run_path(str(REPO / "examples" / name), run_name="__main__")
    return capsys.readouterr().out


def test_langchain_example(monkeypatch, capsys, tmp_path, tiny_checkpoint):
    monkeypatch.setenv("LFM_COLBERT_MODEL", str(tiny_checkpoint))  # the model a new index is built with
    out = _run(monkeypatch, capsys, "langchain_retriever.py", str(tmp_path / "idx"))
    from lfm_colbert.index import Index

    index = Index(tmp_path / "idx")
    assert len(index) == 36 and index.get("penguins-es").metadata == {"lang": "es", "topic": "penguins"}
    ids = [m[1] for m in ROW.findall(out)]
    assert ids[:3] == [h.id for h in index.search("¿Dónde viven los pingüinos?", k=3)]
    assert ids[3:6] == [h.id for h in index.search("¿Dónde viven los pingüinos?", k=3, filter={"lang": ["ja", "ko"]})]
    assert len(ids) == 9


def test_llamaindex_example(monkeypatch, capsys, sample_index):
    from llama_index.core import Settings

    monkeypatch.setattr(Settings, "_llm", None)  # the example sets a global LLM: put it back afterwards
    out = _run(monkeypatch, capsys, "llamaindex_query.py", str(sample_index.path))
    assert out.count("query: ") == 2 and len(ROW.findall(out)) == 6


def test_haystack_example(monkeypatch, capsys, sample_index):
    out = _run(monkeypatch, capsys, "haystack_pipeline.py", str(sample_index.path))
    assert out.count("query: ") == 2 and all(sample_index.get(i) for _, i in ROW.findall(out))


def test_mcp_example(sample_index):
    # A subprocess: the example starts `lfm-colbert mcp` itself, and the SDK hands it our real stderr.
    run = subprocess.run([sys.executable, str(REPO / "examples" / "mcp_client.py"), str(sample_index.path)],
                         capture_output=True, text=True, timeout=180, env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    assert run.returncode == 0, run.stderr
    assert "tools: ['search', 'fetch', 'list_metadata_keys']" in run.stdout
    ids = [i for _, i in ROW.findall(run.stdout)]
    assert ids == [h.id for h in sample_index.search("커피는 어디에서 재배되나요?", k=3, filter={"topic": "coffee"})]
    assert "a bad argument is a tool error: True" in run.stdout
