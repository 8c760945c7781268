"""The evaluation harness's hybrid rows: `--model bm25+M` and `--hybrid` fuse M's run with BM25's
by the index's own fusion, and the rows stand in the retention table."""

from __future__ import annotations

import json

import pytest

from lfm_colbert.eval.datasets import RetrievalDataset
from lfm_colbert.eval.hybrid import HybridSystem
from lfm_colbert.index import fusion


class _Fixed:
    def __init__(self, label, run, precision=None):
        self.label = self.model = label
        self.precision, self.size_bytes, self._run = precision, 1, run

    def describe(self):
        return {"model_id": self.label}

    def run(self, ds, depth=100):
        return self._run


def test_hybrid_system_fuses_runs_like_the_index():
    sem = {"q": {"a": 3.0, "b": 2.0, "c": 1.0}}
    lex = {"q": {"c": 9.0, "d": 4.0, "a": 0.0}}  # bm25s pads with score 0: not a lexical hit
    ds = RetrievalDataset("toy", {d: d for d in "abcd"}, {"q": "q"}, {"q": {"c": 1}})
    run = HybridSystem(_Fixed("m", sem), _Fixed("bm25", lex)).run(ds, depth=10)
    want = fusion.rrf([("a", 3.0), ("b", 2.0), ("c", 1.0)], [("c", 9.0), ("d", 4.0)], 10)
    assert run["q"] == dict(want)
    assert run["q"]["c"] == pytest.approx(1 / 63 + 1 / 61) and run["q"]["a"] == pytest.approx(1 / 61)
    blended = HybridSystem(_Fixed("m", sem), _Fixed("bm25", lex), alpha=1.0).run(ds, depth=10)
    assert list(blended["q"])[:3] == ["a", "b", "c"]


def test_eval_cli_hybrid_rows(tiny_checkpoint, shared_data, tmp_path, capsys):
    from lfm_colbert.cli import main

    scifact = shared_data / "scifact"
    if not scifact.is_dir():
        pytest.skip(f"needs {scifact}")
    out = tmp_path / "out"
    argv = ["eval", "--model", str(tiny_checkpoint), "--hybrid", "--dataset", str(scifact), "--max-docs", "20",
            "--max-queries", "6", "--no-query-expansion", "--no-progress", "--output", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert [r["model"] for r in runs] == [str(tiny_checkpoint), "bm25+" + str(tiny_checkpoint)]
    hybrid = runs[1]
    assert hybrid["describe"]["fusion"] == "rrf" and hybrid["metrics"]["scifact"]["n_queries"] == 6
    # random weights rank badly; BM25's terms lift the fused run above the model alone
    assert hybrid["metrics"]["scifact"]["ndcg@10"] > runs[0]["metrics"]["scifact"]["ndcg@10"]
    assert f"bm25+{tiny_checkpoint.name}" in printed
