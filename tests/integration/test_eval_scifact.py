"""Evaluation on real BEIR SciFact (../shared/data/scifact): the BM25 baseline against the published
range and against bm25s run directly, the evaluator against ranx, and the CLI end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCIFACT = REPO.parent / "shared" / "data" / "scifact"


@pytest.fixture(scope="module")
def scifact() -> Path:
    if not (SCIFACT / "corpus.jsonl").is_file():
        pytest.skip(f"needs real BEIR SciFact at {SCIFACT} (the project's ../shared/data is not beside this checkout)")
    return SCIFACT


@pytest.fixture(scope="module")
def bm25_ours(scifact):
    from lfm_colbert.eval.datasets import load_beir_folder
    from lfm_colbert.eval.metrics import evaluate
    from lfm_colbert.eval.runner import BM25System

    ds = load_beir_folder(scifact)
    run = BM25System().run(ds)
    return ds, run, evaluate(ds.qrels, run, k=10)


@pytest.fixture(scope="module")
def bm25_direct(scifact):
    """bm25s exactly as its README runs BEIR: read the files, tokenize, index, retrieve."""
    import bm25s
    import Stemmer

    corpus = [json.loads(line) for line in open(scifact / "corpus.jsonl", encoding="utf-8")]
    queries = {q["_id"]: q["text"] for q in map(json.loads, open(scifact / "queries.jsonl", encoding="utf-8"))}
    qrels: dict = {}
    for line in list(open(scifact / "qrels" / "test.tsv"))[1:]:
        q, d, s = line.split()
        qrels.setdefault(q, {})[d] = int(s)
    stemmer = Stemmer.Stemmer("english")
    texts = [(d["title"] + " " + d["text"]).strip() for d in corpus]
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False), show_progress=False)
    qids = list(qrels)
    q_tokens = bm25s.tokenize([queries[q] for q in qids], stopwords="en", stemmer=stemmer, show_progress=False)
    docs, scores = retriever.retrieve(q_tokens, k=100, show_progress=False)
    run = {q: {corpus[j]["_id"]: float(s) for j, s in zip(docs[i], scores[i])} for i, q in enumerate(qids)}
    return qrels, run


def test_bm25_in_published_range(bm25_ours):
    ds, _, m = bm25_ours
    assert m["n_queries"] == 300 and len(ds.corpus) == 5183
    assert 0.64 <= m["ndcg@10"] <= 0.70, m
    assert 0.70 <= m["recall@10"] <= 0.90, m


def test_bm25_equals_bm25s_direct(bm25_ours, bm25_direct):
    """Same metric to 3 decimals, with the direct run scored by ranx, not by our evaluator."""
    from ranx import Qrels, Run
    from ranx import evaluate as ranx_evaluate

    _, _, ours = bm25_ours
    qrels, run = bm25_direct
    direct = ranx_evaluate(Qrels(qrels), Run(run), ["ndcg@10", "recall@10"])
    assert round(ours["ndcg@10"], 3) == round(direct["ndcg@10"], 3)
    assert round(ours["recall@10"], 3) == round(direct["recall@10"], 3)


def test_evaluator_agrees_with_ranx_on_the_same_run(bm25_ours):
    from ranx import Qrels, Run
    from ranx import evaluate as ranx_evaluate

    ds, run, ours = bm25_ours
    theirs = ranx_evaluate(Qrels(ds.qrels), Run(run), ["ndcg@10", "recall@10"])
    assert ours["ndcg@10"] == pytest.approx(theirs["ndcg@10"], abs=1e-4)
    assert ours["recall@10"] == pytest.approx(theirs["recall@10"], abs=1e-4)


def test_cli_bm25_end_to_end(scifact, tmp_path, capsys, bm25_ours):
    from lfm_colbert.cli import main

    out = tmp_path / "out"
    assert main(["eval", "--model", "bm25", "--dataset", str(scifact), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| bm25 |" in printed and "scifact" in printed
    data = json.loads((out / "results.json").read_text())
    assert data["runs"][0]["metrics"]["scifact"]["ndcg@10"] == pytest.approx(bm25_ours[2]["ndcg@10"])
    assert (out / "table.md").read_text().strip() in printed
    assert (out / "retention.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--dataset", "nosuchset"], "unknown dataset 'nosuchset'"),
        (["--dataset", "scifact-missing/"], "no such folder"),
        ([], "nothing to evaluate"),
        (["--dataset", "SCIFACT", "--precision", "3bit"], "unknown precision 3bit"),
    ],
)
def test_cli_bad_input(scifact, capsys, argv, message):
    from lfm_colbert.cli import main

    argv = [str(scifact) if a == "SCIFACT" else a for a in argv]
    assert main(["eval", "--model", "bm25", *argv]) == 2
    assert message in capsys.readouterr().err
