"""A compressed index stays exact until it holds `train_tokens`, then fits its codec to everything held."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

from lfm_colbert.index import Index
from lfm_colbert.scoring import maxsim

MODEL = {"model_id": "vectors-only", "variant": "none", "dim": 128, "fingerprint": "test"}
TRAIN = 20_000  # tokens; the corpus holds about 37k
# 2 bits: faiss trains the 4-bit quantizer's 2-d sub-spaces far slower on fewer than 64k points (~25 s here).


def recall(got, ref):
    return float(np.mean([len({h.id for h in a} & {h.id for h in b}) / len(b) for a, b in zip(got, ref)]))


def test_small_first_add_stays_exact_then_trains_on_everything(tmp_path, clustered_corpus, clustered_exact):
    docs, queries = clustered_corpus
    ids = [str(i) for i in range(len(docs))]
    index = Index(tmp_path / "idx", MODEL, compress=2, train_tokens=TRAIN)
    index.add_vectors(docs[:1], ids=ids[:1])
    index.add_vectors(docs[1:300], ids=ids[1:300])  # ~7k tokens: still below TRAIN
    info = index.info()
    assert info["n_centroids"] is None and info["float16_segments"] == 2 and not (tmp_path / "idx" / "codec").exists()
    partial = Index(tmp_path / "exact300", MODEL)
    partial.add_vectors(docs[:300], ids=ids[:300])
    assert index.search_vectors(queries, k=10) == partial.search_vectors(queries, k=10)  # exact until trained

    index.add_vectors(docs[300:], ids=ids[300:])  # crosses TRAIN: fit the codec to all held tokens, encode all
    info = index.info()
    live_tokens = sum(len(d) for d in docs)
    assert info["codec_trained_on_tokens"] == live_tokens and info["float16_segments"] == 0
    assert info["bytes_per_token_vectors"] == pytest.approx(34, abs=1)
    assert recall(index.search_vectors(queries, k=10), clustered_exact) >= 0.95  # the bar for indexing all at once

    # The old behaviour, a codec fitted to the first document only, for contrast.
    first_only = Index(tmp_path / "first-only", MODEL, compress=2, train_tokens=1)
    first_only.add_vectors(docs[:1], ids=ids[:1])
    with pytest.warns(UserWarning, match="fitted to"):  # and it says so
        first_only.add_vectors(docs[1:], ids=ids[1:])
    assert first_only.info()["codec_trained_on_tokens"] == len(docs[0])
    assert recall(first_only.search_vectors(queries, k=10), clustered_exact) < 0.8


def test_deleted_documents_are_not_trained_on_and_ids_survive(tmp_path, clustered_corpus):
    docs, queries = clustered_corpus
    ids = [f"d{i}" for i in range(len(docs))]
    index = Index(tmp_path / "idx", MODEL, compress=2, train_tokens=TRAIN, rescore=True)
    index.add_vectors(docs[:500], ids=ids[:500], metadata=[{"half": i % 2} for i in range(500)])
    index.delete(ids[:10])
    index.add_vectors(docs[500:], ids=ids[500:], metadata=[{"half": i % 2} for i in range(500, len(docs))])
    info = index.info()
    assert info["codec_trained_on_tokens"] == sum(len(d) for d in docs[10:]) and info["float16_segments"] == 0
    assert len(index) == len(docs) - 10 and "d5" not in index and "d10" in index
    hits = index.search_vectors(queries[0], k=5, filter={"half": 1})
    assert all(h.metadata["half"] == 1 for h in hits)
    # rescore keeps float16 vectors: scores are exact MaxSim
    want = maxsim(queries[0], [docs[int(h.id[1:])] for h in hits])
    np.testing.assert_allclose([h.score for h in hits], want, rtol=1e-3)


WRITER = textwrap.dedent(
    """
    import sys
    from lfm_colbert.index import Index
    from lfm_colbert.index.synthetic_vectors import clustered_documents
    docs, _ = clustered_documents(1500, n_clusters=512, tokens=(10, 40), noise=0.4, seed=0)
    a, b = int(sys.argv[2]), int(sys.argv[3])
    Index(sys.argv[1]).add_vectors(docs[a:b], ids=[str(i) for i in range(a, b)])  # killed in here
    """
)


def _kill_writer_at(point, path, a, b):
    env = {**os.environ, "LFM_COLBERT_PAUSE_AT": point}
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(a), str(b)], stdout=subprocess.PIPE, env=env, text=True)
    try:
        assert proc.stdout.readline().strip() == f"paused at {point}"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
        proc.stdout.close()


def test_writers_killed_around_training_leave_a_searchable_index(tmp_path, clustered_corpus, clustered_exact):
    """Killed after fitting the codec but before encoding what was held, then killed again after a
    coded add: search works in each state (float16 segments scored exactly, coded ones through
    PLAID), and the next write encodes what is left."""
    docs, queries = clustered_corpus
    path = tmp_path / "idx"
    index = Index(path, MODEL, compress=2, train_tokens=TRAIN)
    index.add_vectors(docs[:300], ids=[str(i) for i in range(300)])
    index.close()

    _kill_writer_at("train:codec-written", path, 300, 1400)  # committed, codec fitted, nothing encoded
    held = Index(path)
    info = held.info()
    assert len(held) == 1400 and info["n_centroids"] and info["float16_segments"] == 2
    subset = Index(tmp_path / "exact1400", MODEL)
    subset.add_vectors(docs[:1400], ids=[str(i) for i in range(1400)])
    assert held.search_vectors(queries, k=10) == subset.search_vectors(queries, k=10)  # all still exact
    held.close()

    _kill_writer_at("add:committed", path, 1400, 1500)  # written with the codec; the rest still float16
    mixed = Index(path)
    info = mixed.info()
    assert len(mixed) == len(docs) and info["float16_segments"] == 2 and info["segments"] == 3
    got = mixed.search_vectors(queries, k=10)
    assert recall(got, clustered_exact) >= 0.95
    for q, hits in zip(queries, got):  # documents still in float16 are scored exactly
        old = [h for h in hits if int(h.id) < 1400]
        np.testing.assert_allclose([h.score for h in old], maxsim(q, [docs[int(h.id)] for h in old]), rtol=1e-3)
    mixed.verify_files()

    mixed.delete(["1499"])  # any write encodes what was held
    assert mixed.info()["float16_segments"] == 0 and len(mixed) == len(docs) - 1
    assert recall(mixed.search_vectors(queries, k=10), clustered_exact) >= 0.95
    assert {p.name for p in (path / "segments").iterdir()} == {f"{r['id']:06d}" for r in mixed.catalog.segments()}


def test_a_bulk_block_trains_once_at_its_end(tmp_path, clustered_corpus):
    docs, _ = clustered_corpus
    index = Index(tmp_path / "idx", MODEL, compress=2, train_tokens=TRAIN)
    with index.bulk():
        for s in range(0, len(docs), 250):
            index.add_vectors(docs[s : s + 250], ids=[str(i) for i in range(s, min(s + 250, len(docs)))])
        assert index.info()["n_centroids"] is None  # past TRAIN already, still waiting for the block's end
    info = index.info()
    assert info["codec_trained_on_tokens"] == sum(len(d) for d in docs) and info["float16_segments"] == 0

    interrupted = Index(tmp_path / "interrupted", MODEL, compress=2, train_tokens=TRAIN)
    with pytest.raises(KeyboardInterrupt), interrupted.bulk():  # stopped by the user: no training
        interrupted.add_vectors(docs[:1000], ids=[str(i) for i in range(1000)])
        raise KeyboardInterrupt
    assert interrupted.info()["n_centroids"] is None and len(interrupted) == 1000  # the add itself is kept
    interrupted.add_vectors(docs[1000:], ids=[str(i) for i in range(1000, len(docs))])  # the next add trains
    assert interrupted.info()["codec_trained_on_tokens"] == sum(len(d) for d in docs)


def test_train_tokens_is_checked_and_fixed_at_creation(tmp_path):
    from lfm_colbert.errors import InputError

    for bad in (0, -5, 2.5, True, "10"):
        with pytest.raises(InputError, match="train_tokens"):
            Index(tmp_path / "bad", MODEL, compress=2, train_tokens=bad)
    with pytest.raises(InputError, match="compressed"):
        Index(tmp_path / "exact", MODEL, train_tokens=100)
    Index(tmp_path / "idx", MODEL, compress=2, train_tokens=100).close()
    assert Index(tmp_path / "idx").train_tokens == 100
    with pytest.raises(InputError, match="chosen at creation"):
        Index(tmp_path / "idx", train_tokens=200)


def test_outgrowing_the_codec_warns_and_info_says_so(tmp_path, clustered_corpus, capsys):
    from lfm_colbert.cli import main

    docs, _ = clustered_corpus
    ids = [str(i) for i in range(len(docs))]
    index = Index(tmp_path / "idx", MODEL, compress=2, train_tokens=5_000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning while the index is near its codec's size
        index.add_vectors(docs[:250], ids=ids[:250])
    fitted = index.info()["codec_trained_on_tokens"]
    assert fitted == sum(len(d) for d in docs[:250])
    with pytest.warns(UserWarning, match=r"x the tokens its codec was fitted to"):
        index.add_vectors(docs[250:], ids=ids[250:])
    assert index.info()["codec_growth"] == pytest.approx(sum(len(d) for d in docs) / fitted, abs=0.01)
    assert main(["info", str(tmp_path / "idx")]) == 0
    assert "index the collection again" in capsys.readouterr().out

    bulk = Index(tmp_path / "bulk", MODEL, compress=2, train_tokens=5_000)
    bulk.add_vectors(docs[:250], ids=ids[:250])
    with pytest.warns(UserWarning, match="fitted to") as caught, bulk.bulk():
        for s in range(250, len(docs), 250):
            bulk.add_vectors(docs[s : s + 250], ids=ids[s : s + 250])
    assert len([w for w in caught if "fitted to" in str(w.message)]) == 1  # once for the block, not per add
