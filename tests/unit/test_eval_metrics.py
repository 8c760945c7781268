"""pytrec_eval-backed metrics, cross-checked against ranx (a second, independent evaluator)."""

from __future__ import annotations

import numpy as np
import pytest

from lfm_colbert.errors import InputError
from lfm_colbert.eval.metrics import evaluate, top_k_run


def _random_case(seed: int, n_queries: int = 40, n_docs: int = 200, graded: bool = True):
    rng = np.random.default_rng(seed)
    qrels, run = {}, {}
    for q in range(n_queries):
        rel = rng.choice(n_docs, size=rng.integers(1, 6), replace=False)
        grades = rng.integers(1, 3, size=len(rel)) if graded else np.ones(len(rel), int)
        qrels[f"q{q}"] = {f"d{d}": int(g) for d, g in zip(rel, grades)}
        qrels[f"q{q}"][f"d{(rel[0] + 1) % n_docs}"] = 0  # a judged non-relevant doc, as MIRACL has
        retrieved = rng.choice(n_docs, size=50, replace=False)
        scores = rng.permutation(50).astype(float) + rng.random()  # distinct: no tie-breaking differences
        run[f"q{q}"] = {f"d{d}": float(s) for d, s in zip(retrieved, scores)}
    return qrels, run


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("k", [5, 10])
def test_agrees_with_ranx_to_4_decimals(seed, k):
    from ranx import Qrels, Run
    from ranx import evaluate as ranx_evaluate

    qrels, run = _random_case(seed)
    ours = evaluate(qrels, run, k=k)
    theirs = ranx_evaluate(Qrels(qrels), Run(run), [f"ndcg@{k}", f"recall@{k}"])
    assert ours[f"ndcg@{k}"] == pytest.approx(theirs[f"ndcg@{k}"], abs=1e-4)
    assert ours[f"recall@{k}"] == pytest.approx(theirs[f"recall@{k}"], abs=1e-4)
    assert 0 < ours[f"ndcg@{k}"] < 1


def test_perfect_and_empty_rankings():
    qrels = {"a": {"x": 1, "y": 1}, "b": {"z": 2}}
    perfect = {"a": {"x": 3.0, "y": 2.0, "n": 1.0}, "b": {"z": 1.0}}
    assert evaluate(qrels, perfect)["ndcg@10"] == pytest.approx(1.0)
    assert evaluate(qrels, perfect)["recall@10"] == pytest.approx(1.0)
    none = {"a": {"n": 1.0}, "b": {"m": 1.0}}
    assert evaluate(qrels, none)["ndcg@10"] == 0.0


def test_missing_query_counts_as_zero():
    qrels = {"a": {"x": 1}, "b": {"z": 1}}
    full = evaluate(qrels, {"a": {"x": 1.0}, "b": {"z": 1.0}})
    half = evaluate(qrels, {"a": {"x": 1.0}})
    assert full["ndcg@10"] == pytest.approx(1.0)
    assert half["ndcg@10"] == pytest.approx(0.5)  # pytrec_eval alone would report 1.0 here
    assert half["n_queries"] == 2


def test_queries_without_relevant_docs_are_not_averaged():
    qrels = {"a": {"x": 1}, "b": {"z": 0}}
    assert evaluate(qrels, {"a": {"x": 1.0}})["n_queries"] == 1


def test_identical_ids_are_ignored_by_default():
    qrels = {"a": {"x": 1}}
    run = {"a": {"a": 9.0, "x": 1.0}}  # the query itself ranks first (ArguAna/Quora situation)
    assert evaluate(qrels, run)["ndcg@10"] == pytest.approx(1.0)
    assert evaluate(qrels, run, ignore_identical_ids=False)["ndcg@10"] < 1.0


def test_accuracy_at_1_and_per_query():
    qrels = {"a": {"x": 1}, "b": {"y": 1}}
    run = {"a": {"x": 2.0, "y": 1.0}, "b": {"x": 2.0, "y": 1.0}}
    res = evaluate(qrels, run, extra=("accuracy@1",), per_query=True)
    assert res["accuracy@1"] == pytest.approx(0.5)
    assert res["per_query"]["a"]["accuracy@1"] == 1.0 and res["per_query"]["b"]["accuracy@1"] == 0.0


def test_bad_inputs():
    with pytest.raises(InputError):
        evaluate({"a": {"x": 0}}, {"a": {"x": 1.0}})
    with pytest.raises(InputError):
        evaluate({"a": {"x": 1}}, {"a": {"x": 1.0}}, extra=("mrr@3",))


def test_top_k_run_keeps_the_best():
    rng = np.random.default_rng(0)
    scores = rng.random((3, 20)).astype(np.float32)
    run = top_k_run(["a", "b", "c"], [f"d{i}" for i in range(20)], scores, k=5)
    for i, q in enumerate("abc"):
        best = {f"d{j}" for j in np.argsort(-scores[i])[:5]}
        assert set(run[q]) == best
    assert len(top_k_run(["a"], ["x", "y"], scores[:1, :2], k=10)["a"]) == 2
    with pytest.raises(InputError):
        top_k_run(["a"], ["x"], scores, k=1)
