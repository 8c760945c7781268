"""Runner (systems x datasets, retention) and report (table, results.json, PNG), with a fake encoder."""

from __future__ import annotations

import json
import zlib

import numpy as np
import pytest

from lfm_colbert.errors import InputError
from lfm_colbert.eval.datasets import RetrievalDataset
from lfm_colbert.eval.report import markdown_table, write_report
from lfm_colbert.eval.runner import BM25System, ColBERTSystem, prepare_precision, retention, run_evaluation


class WordEncoder:
    """A stand-in for ColBERT: one fixed random unit vector per word, plus noise that grows as
    the 'precision' shrinks, so retention drops in a known direction."""

    NOISE = {None: 0.0, "bf16": 0.0, "8bit": 0.3, "4bit": 1.5, "mxfp4": 3.0}

    def __init__(self, precision=None, dim=32):
        self.noise, self.dim = self.NOISE[precision], dim
        self.calls = 0

    def _vec(self, word, salt=0):
        rng = np.random.default_rng(zlib.crc32(word.encode()) + salt)
        return rng.standard_normal(self.dim)

    def encode(self, texts, *, is_query=False, batch_size=32, show_progress_bar=None):
        self.calls += 1
        out = []
        for t in texts:
            words = t.lower().split() or ["<empty>"]
            v = np.stack([self._vec(w) + self.noise * self._vec(w, salt=1 + is_query) for w in words])
            out.append((v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32))
        return out

    def describe(self):
        return {"model_id": "fake", "noise": self.noise}


def _toy(name, n=60, seed=0):
    rng = np.random.default_rng(seed)
    vocab = [f"w{i}" for i in range(400)]
    corpus = {f"d{i}": " ".join(rng.choice(vocab, 12)) for i in range(n)}
    queries, qrels = {}, {}
    for q in range(15):
        d = f"d{rng.integers(n)}"
        queries[f"q{q}"] = " ".join(corpus[d].split()[:4])
        qrels[f"q{q}"] = {d: 1}
    return RetrievalDataset(name, corpus, queries, qrels).validate()


def _loader(model, precision):
    if model == "bm25":
        return BM25System()
    return ColBERTSystem(WordEncoder(precision), f"{model} {precision}" if precision else model, model, precision,
                         show_progress=False, size_bytes={"bf16": 700_000_000, "4bit": 200_000_000}.get(precision))


@pytest.fixture(scope="module")
def results():
    datasets = [_toy("toy-a", seed=0), _toy("toy-b", seed=1)]
    return run_evaluation(["fake", "bm25"], datasets, precisions=["bf16", "8bit", "4bit", "mxfp4"], loader=_loader,
                          settings={"note": "fake encoder"})


def test_runs_and_retention(results):
    runs = results["runs"]
    assert [r["label"] for r in runs] == ["fake bf16", "fake 8bit", "fake 4bit", "fake mxfp4", "bm25"]
    bf16 = runs[0]
    assert bf16["retention"]["mean"]["ndcg@10"] == pytest.approx(1.0)
    assert bf16["metrics"]["toy-a"]["ndcg@10"] > 0.9  # exact word overlap: near-perfect retrieval
    for r in runs[1:4]:
        for ds in ("toy-a", "toy-b"):
            want = r["metrics"][ds]["ndcg@10"] / bf16["metrics"][ds]["ndcg@10"]
            assert r["retention"][ds]["ndcg@10"] == pytest.approx(want)
        assert r["retention"]["baseline"] == "fake bf16"
    assert runs[3]["mean"]["ndcg@10"] < runs[0]["mean"]["ndcg@10"]  # heavy noise hurts
    assert runs[4]["retention"] is None
    assert results["datasets"]["toy-a"]["n_queries"] == 15


def test_retention_baseline_is_first_without_bf16(results):
    from lfm_colbert.eval.runner import RunResult

    a = RunResult("m 8bit", "m", "8bit", None, {}, {"x": {"ndcg@10": 0.5, "recall@10": 0.8}})
    b = RunResult("m 4bit", "m", "4bit", None, {}, {"x": {"ndcg@10": 0.25, "recall@10": 0.4}})
    ret = retention([a, b], ["ndcg@10", "recall@10"])
    assert ret[1]["x"]["ndcg@10"] == pytest.approx(0.5) and ret[0]["mean"]["recall@10"] == pytest.approx(1.0)


def test_markdown_table(results):
    table = markdown_table(results)
    lines = table.splitlines()
    header = next(line for line in lines if line.startswith("| model"))
    assert "toy-a" in header and "mean NDCG@10" in header and "ret. R@10" in header
    row = next(line for line in lines if line.startswith("| fake | 4bit"))
    assert "200.0 MB" in row
    assert any(line.startswith("| bm25 | — |") for line in lines)
    assert "Retention per dataset" in table and "Note: fake encoder" in table


def test_write_report(results, tmp_path):
    paths = write_report(results, tmp_path / "out")
    data = json.loads(paths["results"].read_text())
    assert data["schema"] == "lfm-colbert-eval/1" and len(data["runs"]) == 5
    assert paths["table"].read_text() == markdown_table(results)
    png = paths["plot"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_crosslingual_results(tmp_path):
    en = RetrievalDataset("x:en->en", {"a": "w1 w2", "b": "w3 w4"}, {"q": "w1"}, {"q": {"a": 1}}, lang="en", doc_lang="en",
                          meta={"corpus_key": "c:en", "queries_key": "q:en"})
    res = run_evaluation(["fake"], [], crosslingual=("toy", ["en"], [en]), loader=_loader)
    assert res["runs"] == []
    cell = res["crosslingual"]["systems"][0]["cells"]["en->en"]
    assert cell["accuracy@1"] == 1.0
    assert "toy accuracy@1" in markdown_table(res)


def test_encodings_are_reused_across_pairs():
    enc = WordEncoder()
    sys_ = ColBERTSystem(enc, "fake", "fake", show_progress=False)
    meta = {"corpus_key": "c", "queries_key": "q"}
    ds = RetrievalDataset("p", {"a": "w1", "b": "w2"}, {"q1": "w1", "q2": "w2"}, {"q1": {"a": 1}, "q2": {"b": 1}}, meta=meta)
    sys_.run(ds)
    sys_.run(ds)
    assert enc.calls == 2  # corpus once, queries once


def test_bad_precision_and_search():
    with pytest.raises(InputError, match="unknown precision"):
        prepare_precision("m", "3bit")
    with pytest.raises(InputError, match="unknown search"):
        ColBERTSystem(WordEncoder(), "x", "x", search="fast")
