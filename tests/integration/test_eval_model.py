"""`lfm-colbert eval` end to end with a tiny synthetic checkpoint (random weights: quality is
meaningless, the pipeline is real), on SciFact and on the cross-lingual sets."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"needs {path} (the project's ../shared/data is not beside this checkout)")
    return path


def test_tiny_model_and_bm25_on_scifact(tiny_checkpoint, tmp_path, capsys):
    from lfm_colbert.cli import main

    scifact = _need(DATA / "scifact")
    out = tmp_path / "out"
    argv = ["eval", "--model", str(tiny_checkpoint), "--model", "bm25", "--dataset", str(scifact),
            "--max-docs", "150", "--max-queries", "30", "--no-query-expansion", "--no-progress", "--output", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    data = json.loads((out / "results.json").read_text())
    model_run, bm25_run = data["runs"]
    assert model_run["model"] == str(tiny_checkpoint) and bm25_run["model"] == "bm25"
    assert model_run["describe"]["settings"]["do_query_expansion"] is False
    assert model_run["size_bytes"] > 0
    for run in data["runs"]:
        m = run["metrics"]["scifact"]
        assert m["n_queries"] == 30 and 0.0 <= m["ndcg@10"] <= 1.0 and 0.0 <= m["recall@10"] <= 1.0
    assert data["datasets"]["scifact"]["n_docs"] >= 150  # every judged doc kept, the rest sampled
    # On 150 documents BM25 finds most claims' abstracts; random weights do far worse.
    assert bm25_run["metrics"]["scifact"]["ndcg@10"] > model_run["metrics"]["scifact"]["ndcg@10"]
    assert f"| {tiny_checkpoint.name} | native |" in printed and "| bm25 | — |" in printed
    assert (out / "retention.png").is_file() and (out / "table.md").is_file()


def test_run_scores_are_maxsim(tiny_model):
    """The brute-force run carries exactly scoring.maxsim's scores for the real encoder's vectors."""
    from lfm_colbert.eval.datasets import RetrievalDataset
    from lfm_colbert.eval.runner import ColBERTSystem
    from lfm_colbert.scoring import maxsim

    docs = {"a": "Penguins live in Antarctica.", "b": "Camels cross deserts.", "c": "", "d": "Tokyo is big."}
    ds = RetrievalDataset("toy", docs, {"q": "Where do penguins live?"}, {"q": {"a": 1}})
    # batch_size=1 on both sides: LFM2.5 document vectors depend on a batch's padding
    run = ColBERTSystem(tiny_model, "tiny", "tiny", batch_size=1, show_progress=False).run(ds)
    q = tiny_model.encode(["Where do penguins live?"], is_query=True)[0]
    d = [tiny_model.encode([t])[0] if t else np.zeros((0, 128), np.float32) for t in docs.values()]
    want = maxsim(q, d)  # the empty document scores 0
    assert set(run["q"]) == set(docs)
    np.testing.assert_allclose([run["q"][k] for k in docs], want, rtol=1e-4, atol=1e-4)


def test_precisions_retention_table(tiny_checkpoint, tmp_path):
    from lfm_colbert.cli import main

    scifact = _need(DATA / "scifact")
    out = tmp_path / "out"
    argv = ["eval", "--model", str(tiny_checkpoint), "--precision", "bf16,8bit,4bit,mxfp4", "--dataset", str(scifact),
            "--max-docs", "60", "--max-queries", "10", "--cache-dir", str(tmp_path / "cache"), "--no-progress",
            "--output", str(out)]
    assert main(argv) == 0
    data = json.loads((out / "results.json").read_text())
    assert [r["precision"] for r in data["runs"]] == ["bf16", "8bit", "4bit", "mxfp4"]
    assert data["runs"][0]["retention"]["mean"]["ndcg@10"] == pytest.approx(1.0)
    for r in data["runs"][1:]:
        assert r["retention"]["baseline"] == data["runs"][0]["label"]
    assert all(r["size_bytes"] > 0 for r in data["runs"])
    assert (out / "retention.png").read_bytes()[:4] == b"\x89PNG"


def test_crosslingual_bm25_matrix_on_xquad(tmp_path, capsys):
    from lfm_colbert.cli import main

    _need(DATA / "xquad-r")
    out = tmp_path / "xl"
    assert main(["eval", "--model", "bm25", "--crosslingual", "xquad-r", "--langs", "en,es,zh",
                 "--data-dir", str(DATA), "--output", str(out)]) == 0
    cells = json.loads((out / "results.json").read_text())["crosslingual"]["systems"][0]["cells"]
    assert len(cells) == 9
    nd = {k: v["ndcg@10"] for k, v in cells.items()}
    for lang in ("en", "es", "zh"):
        assert nd[f"{lang}->{lang}"] > 0.3  # monolingual: lexical overlap works
    assert nd["en->zh"] < 0.1 and nd["zh->es"] < 0.1  # no shared words across scripts
    assert nd["en->en"] > nd["en->es"]
    assert "xquad-r ndcg@10, bm25" in capsys.readouterr().out


def test_crosslingual_tiny_model_on_tatoeba(tiny_checkpoint, tmp_path):
    from lfm_colbert.cli import main

    _need(DATA / "tatoeba-laser")
    out = tmp_path / "xl"
    assert main(["eval", "--model", str(tiny_checkpoint), "--crosslingual", "tatoeba", "--langs", "ja",
                 "--max-queries", "150", "--data-dir", str(DATA), "--no-progress", "--output", str(out)]) == 0
    data = json.loads((out / "results.json").read_text())
    cells = data["crosslingual"]["systems"][0]["cells"]
    assert set(cells) == {"ja->en", "en->ja"}
    assert all(0.0 <= c["accuracy@1"] <= 1.0 and c["n_queries"] == 150 for c in cells.values())


def test_compressed_index_option_agrees_with_brute_force(tiny_model):
    """--search index: the compressed index finds nearly the brute-force top documents."""
    pytest.importorskip("faiss", reason="the compressed index needs faiss-cpu (the `index` extra)")
    from lfm_colbert.eval.datasets import RetrievalDataset
    from lfm_colbert.eval.runner import ColBERTSystem

    rng = np.random.default_rng(0)
    words = "penguin camel tokyo river protein galaxy violin harbor tundra glacier piano orbit".split()
    docs = {f"d{i}": " ".join(rng.choice(words, 8)) for i in range(120)}
    queries = {f"q{i}": " ".join(rng.choice(words, 3)) for i in range(10)}
    ds = RetrievalDataset("toy", docs, queries, {q: {"d0": 1} for q in queries})
    brute = ColBERTSystem(tiny_model, "t", "t", show_progress=False).run(ds, depth=10)
    index = ColBERTSystem(tiny_model, "t", "t", search="index", show_progress=False).run(ds, depth=10)
    overlap = np.mean([len(set(brute[q]) & set(index[q])) / 10 for q in queries])
    assert overlap >= 0.6, overlap


def test_a_missing_optional_package_names_the_extra(tmp_path, monkeypatch, capsys):
    """Without the `eval` extra, `eval --model bm25` says what to install instead of a traceback."""
    data = tmp_path / "tiny-beir"
    (data / "qrels").mkdir(parents=True)
    (data / "corpus.jsonl").write_text('{"_id": "d1", "text": "penguins live in the south"}\n', encoding="utf-8")
    (data / "queries.jsonl").write_text('{"_id": "q1", "text": "where do penguins live"}\n', encoding="utf-8")
    (data / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n", encoding="utf-8")
    monkeypatch.setitem(sys.modules, "bm25s", None)  # import fails
    from lfm_colbert.cli import main

    assert main(["eval", "--model", "bm25", "--dataset", str(data), "--no-progress",
                 "--cache-dir", str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "pip install 'lfm-colbert[eval]'" in err and "Traceback" not in err
