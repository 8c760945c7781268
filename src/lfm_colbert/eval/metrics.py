"""NDCG@k, Recall@k and Accuracy@1 through pytrec_eval (the trec_eval C code), never by hand.

A run is {query_id: {doc_id: score}}; qrels are {query_id: {doc_id: grade}}. Means are taken over
every judged query (one with a relevant document); a judged query missing from the run scores 0,
so dropping queries can never raise a score.
"""

from __future__ import annotations

import numpy as np

from lfm_colbert.errors import InputError

Run = dict[str, dict[str, float]]
Qrels = dict[str, dict[str, int]]

# our metric name -> (pytrec_eval measure family, key in its per-query output)
_MEASURES = {
    "ndcg@{k}": ("ndcg_cut.{k}", "ndcg_cut_{k}"),
    "recall@{k}": ("recall.{k}", "recall_{k}"),
    "accuracy@1": ("P.1", "P_1"),  # with one relevant document, P@1 is top-1 accuracy
}


def _measures(k: int, extra: tuple[str, ...]) -> dict[str, tuple[str, str]]:
    out = {}
    for name in ("ndcg@{k}", "recall@{k}") + extra:
        if name not in _MEASURES:
            raise InputError(f"unknown metric {name!r}; known: {', '.join(_MEASURES)}")
        measure, key = _MEASURES[name]
        out[name.format(k=k)] = (measure.format(k=k), key.format(k=k))
    return out


def evaluate(
    qrels: Qrels,
    run: Run,
    k: int = 10,
    *,
    extra: tuple[str, ...] = (),
    ignore_identical_ids: bool = True,
    per_query: bool = False,
) -> dict:
    """Mean NDCG@k and Recall@k (plus `extra`, e.g. ('accuracy@1',)) of `run` against `qrels`.

    ignore_identical_ids drops a document whose id equals the query id (BEIR's rule for ArguAna
    and Quora, where a query is also in the corpus). With per_query=True the result also holds
    {"per_query": {query_id: {metric: value}}}."""
    import pytrec_eval

    judged = {q: {d: int(g) for d, g in rels.items()} for q, rels in qrels.items() if any(g > 0 for g in rels.values())}
    if not judged:
        raise InputError("qrels judge no document relevant; nothing to evaluate")
    clean: Run = {}
    for q in judged:
        docs = run.get(q, {})
        if ignore_identical_ids:
            docs = {d: s for d, s in docs.items() if d != q}
        clean[q] = {d: float(s) for d, s in docs.items()}
    measures = _measures(k, extra)
    evaluator = pytrec_eval.RelevanceEvaluator(judged, {m for m, _ in measures.values()})
    # pytrec_eval leaves out queries with an empty run; they count as 0 below.
    scored = evaluator.evaluate({q: docs for q, docs in clean.items() if docs})
    per_q = {q: {name: float(scored.get(q, {}).get(key, 0.0)) for name, (_, key) in measures.items()} for q in judged}
    result: dict = {name: float(np.mean([v[name] for v in per_q.values()])) for name in measures}
    result["n_queries"] = len(judged)
    if per_query:
        result["per_query"] = per_q
    return result


def top_k_run(query_ids: list[str], doc_ids: list[str], scores: np.ndarray, k: int = 100) -> Run:
    """A run from a score matrix (n_queries, n_docs): each query's top-k documents and their scores."""
    scores = np.asarray(scores)
    if scores.shape != (len(query_ids), len(doc_ids)):
        raise InputError(f"scores shape {scores.shape} != ({len(query_ids)}, {len(doc_ids)})")
    k = min(k, len(doc_ids))
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]  # (n_queries, k), unordered
    return {q: {doc_ids[j]: float(scores[i, j]) for j in top[i]} for i, q in enumerate(query_ids)}
