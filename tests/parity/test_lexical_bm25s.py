"""Lexical search inside the index equals bm25s run directly on the same documents with the same
tokenizer (lfm_colbert.eval.bm25): SciFact (../shared/data/scifact), 100 queries, top-10 ids and
scores to 3 decimals; and the same after deletes (statistics over the live documents only)."""

from __future__ import annotations

import numpy as np
import pytest

from lfm_colbert.eval.bm25 import BM25
from lfm_colbert.index import Index

MODEL = {"model_id": "vectors-only", "variant": "none", "dim": 8, "fingerprint": "lexical-parity"}


@pytest.fixture(scope="module")
def scifact(shared_data):
    from lfm_colbert.eval import load_beir_folder

    if not (shared_data / "scifact").is_dir():
        pytest.skip(f"needs {shared_data / 'scifact'} (BEIR SciFact in the project's ../shared/data)")
    return load_beir_folder(shared_data / "scifact")


@pytest.fixture(scope="module")
def scifact_index(scifact, tmp_path_factory):
    ids, texts = list(scifact.corpus), list(scifact.corpus.values())
    rng = np.random.default_rng(0)
    vecs = [rng.standard_normal((1, 8)).astype(np.float32) for _ in ids]  # lexical search never reads them
    index = Index(tmp_path_factory.mktemp("lex") / "scifact", MODEL)
    index.add_vectors(vecs, ids=ids, texts=texts)
    yield index
    index.close()


def _same_ranking(got, want_ids, want_scores):
    """Scores equal to 3 decimals position by position; each id scored as bm25s scores it, and in
    bm25s's place unless tied (bm25s keeps float32 scores: ties may order either way)."""
    want = [(d, float(s)) for d, s in zip(want_ids, want_scores) if s > 0]  # bm25s pads with score-0 documents
    assert len(got) == len(want)
    assert [h.score for h in got] == pytest.approx([s for _, s in want], abs=5e-4)
    scores = dict(want)
    for pos, h in enumerate(got):
        if h.id != want[pos][0]:  # a tie: the same score as the one in that place
            assert h.score == pytest.approx(want[pos][1], abs=1e-3)
        if h.id in scores:
            assert h.score == pytest.approx(scores[h.id], abs=5e-4)
    return sum(h.id == d for h, (d, _) in zip(got, want))


def _check(index, corpus_ids, corpus_texts, qids, qtexts):
    bm25 = BM25(lang="en").index(corpus_ids, corpus_texts)
    idx, scores = bm25.search(qtexts, k=10)
    got = index.search(qtexts, k=10, mode="lexical")
    same = sum(_same_ranking(got[i], [corpus_ids[j] for j in idx[i]], scores[i]) for i in range(len(qids)))
    assert same >= 0.98 * sum(min(10, int((s > 0).sum())) for s in scores)  # ids in bm25s's very places


def test_lexical_mode_equals_bm25s_on_scifact(scifact, scifact_index):
    ids, texts = list(scifact.corpus), list(scifact.corpus.values())
    qids = sorted(scifact.queries)[:100]
    _check(scifact_index, ids, texts, qids, [scifact.queries[q] for q in qids])


def test_lexical_statistics_follow_deletes(scifact, scifact_index):
    ids = list(scifact.corpus)
    gone = ids[::7]
    scifact_index.delete(gone)
    keep = [i for i in ids if i not in set(gone)]
    qids = sorted(scifact.queries)[100:140]
    _check(scifact_index, keep, [scifact.corpus[i] for i in keep], qids, [scifact.queries[q] for q in qids])
