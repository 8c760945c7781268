"""Incremental updates: add, upsert and delete by the user's ids, never renumbering; compaction."""

from __future__ import annotations

import numpy as np
import pytest

from lfm_colbert.errors import InputError
from lfm_colbert.index import Index
from lfm_colbert.index.synthetic_vectors import clustered_documents, queries_for

MODEL = {"model_id": "vectors-only", "variant": "none", "dim": 128, "fingerprint": "test"}


@pytest.fixture(scope="module")
def corpus():
    docs, _ = clustered_documents(120, n_clusters=32, tokens=(4, 20), seed=3)
    return docs, queries_for(docs, 4, seed=5)


def _scores(index, q, k=1000):
    return {h.id: h.score for h in index.search_vectors(q, k=k)}


@pytest.mark.parametrize("compress", [None, 4])
def test_add_delete_upsert_keep_ids_and_results(tmp_path, corpus, compress):
    docs, queries = corpus
    index = Index(tmp_path / "idx", MODEL, compress=compress, n_centroids=16 if compress else None,
                  train_tokens=1 if compress else None)
    ids = [f"doc-{i}" for i in range(len(docs))]
    index.add_vectors(docs[:60], ids=ids[:60], texts=[f"t{i}" for i in range(60)])
    index.add_vectors(docs[60:], ids=ids[60:], texts=[f"t{i}" for i in range(60, 120)])
    before = _scores(index, queries[0])
    assert set(before) == set(ids)

    index.delete(["doc-5", "doc-70"])
    after = _scores(index, queries[0])
    assert set(after) == set(ids) - {"doc-5", "doc-70"}
    assert all(after[i] == pytest.approx(before[i], abs=1e-5) for i in after)  # nobody else moved

    # Upsert doc-7 with the vectors of doc-90: it now scores exactly like doc-90 and keeps its id.
    index.add_vectors([docs[90]], ids=["doc-7"], texts=["new"], metadata=[{"v": 2}], upsert=True)
    hits = {h.id: h for h in index.search_vectors(queries[0], k=1000)}
    assert hits["doc-7"].score == pytest.approx(hits["doc-90"].score, abs=1e-5)
    assert hits["doc-7"].text == "new" and hits["doc-7"].metadata == {"v": 2}
    assert len(index) == 118


def test_duplicate_and_unknown_ids_are_errors_that_change_nothing(tmp_path, corpus):
    docs, queries = corpus
    index = Index(tmp_path / "idx", MODEL)
    index.add_vectors(docs[:10], ids=[str(i) for i in range(10)])
    with pytest.raises(InputError, match="already in the index"):
        index.add_vectors(docs[10:12], ids=["10", "3"])
    with pytest.raises(InputError, match="more than once"):
        index.add_vectors(docs[10:12], ids=["x", "x"])
    with pytest.raises(InputError, match="not in the index"):
        index.delete(["2", "nope"])
    assert len(index) == 10 and "2" in index and "10" not in index
    with pytest.raises(InputError):
        index.add_vectors([np.zeros((0, 128), np.float32)], ids=["empty"])
    with pytest.raises(InputError):
        index.add_vectors([np.full((3, 128), np.nan, np.float32)], ids=["nan"])
    assert index.delete(["nope"], missing_ok=True) == 0


def test_metadata_must_be_json_and_is_stored_as_json(tmp_path, corpus):
    import datetime

    docs, queries = corpus
    index = Index(tmp_path / "idx", MODEL)
    for bad, message in (({"d": datetime.date(2026, 1, 1)}, "type date is not JSON"), ({"x": float("nan")}, "not JSON compliant")):
        with pytest.raises(InputError, match=f"metadata of 'b': .*{message}"):
            index.add_vectors(docs[:1], ids=["b"], metadata=[bad])
    assert len(index) == 0
    # Before, a NaN reached SQLite and every later filtered search failed as "corrupted index file".
    index.add_vectors(docs[:2], ids=["n", "t"], metadata=[{"year": np.int64(2020), "w": np.float32(0.5)}, {"tags": ("a", "b")}])
    assert [h.id for h in index.search_vectors(queries[0], k=5, filter={"year": 2020})] == ["n"]
    assert index.search_vectors(queries[0], k=5, filter={"tags": "b"})[0].metadata == {"tags": ["a", "b"]}
    assert index.unchanged(["t"], [None], [{"tags": ("a", "b")}]) == {"t"}  # a tuple is the list it was stored as


def test_parent_ids_delete_and_replace_all_passages(tmp_path, corpus):
    docs, _ = corpus
    index = Index(tmp_path / "idx", MODEL)
    index.add_vectors(docs[:3], ids=["a#0", "a#1", "a#2"], parents=["a"] * 3)
    index.add_vectors(docs[3:4], ids=["b"], parents=["b"])
    # The document shrank to two passages: upserting them drops a#2 too.
    index.add_vectors(docs[4:6], ids=["a#0", "a#1"], parents=["a", "a"], upsert=True)
    assert "a#2" not in index and len(index) == 3
    assert index.delete(["a"]) == 2
    assert len(index) == 1 and "b" in index


def test_compaction_keeps_ids_and_results(tmp_path, corpus):
    docs, queries = corpus
    index = Index(tmp_path / "idx", MODEL)
    ids = [f"d{i}" for i in range(len(docs))]
    index.add_vectors(docs, ids=ids, metadata=[{"i": i} for i in range(len(docs))])
    index.delete(ids[:20])  # below the automatic threshold
    assert index.info()["deleted_fraction"] > 0
    before = index.search_vectors(queries, k=15)
    index.compact()
    info = index.info()
    assert info["deleted_fraction"] == 0 and info["documents"] == len(docs) - 20
    assert index.search_vectors(queries, k=15) == before
    index.delete(ids[20:60])  # over 25%: compacts by itself
    assert index.info()["deleted_fraction"] == 0
    segs = sorted(p.name for p in (tmp_path / "idx" / "segments").iterdir())
    assert len(segs) == index.info()["segments"]  # old segment directories are gone


def test_unchanged_finds_what_needs_no_encoding(tmp_path, corpus):
    docs, _ = corpus
    index = Index(tmp_path / "idx", MODEL)
    # "f" is a file of three passages, "solo" a plain document
    index.add_vectors(docs[:4], ids=["f#0", "f#1", "f#2", "solo"], texts=["a", "b", "c", "s"],
                      metadata=[{"p": 0}, {"p": 1}, {"p": 2}, {"lang": "en"}], parents=["f", "f", "f", None])
    same = index.unchanged(["f#0", "f#1", "f#2", "solo", "new"], ["a", "b", "c", "s", "n"],
                           [{"p": 0}, {"p": 1}, {"p": 2}, {"lang": "en"}, None], ["f", "f", "f", None, None])
    assert same == {"f#0", "f#1", "f#2", "solo"}
    assert index.unchanged(["solo"], ["s"], [{"lang": "de"}]) == set()  # metadata changed
    assert index.unchanged(["solo"], ["S"], [{"lang": "en"}]) == set()  # text changed
    assert index.unchanged(["solo"], ["s"], [{"lang": "en"}], ["f"]) == set()  # now a passage of another document
    # A file counts as a whole: one passage changed, or the file got shorter, re-encodes all of it.
    assert index.unchanged(["f#0", "f#1", "f#2"], ["a", "B", "c"], [{"p": 0}, {"p": 1}, {"p": 2}], ["f"] * 3) == set()
    assert index.unchanged(["f#0", "f#1"], ["a", "b"], [{"p": 0}, {"p": 1}], ["f"] * 2) == set()


def test_small_adds_are_merged_so_segments_stay_few(tmp_path, corpus):
    docs, queries = corpus
    one_by_one = Index(tmp_path / "one", MODEL)
    for i, d in enumerate(docs[:70]):
        one_by_one.add_vectors([d], ids=[f"d{i}"], texts=[f"t{i}"], metadata=[{"i": i}])
    whole = Index(tmp_path / "whole", MODEL)
    whole.add_vectors(docs[:70], ids=[f"d{i}" for i in range(70)], texts=[f"t{i}" for i in range(70)],
                      metadata=[{"i": i} for i in range(70)])
    n_segments = one_by_one.info()["segments"]
    assert n_segments <= 2 * 7  # at most MERGE_FANIN - 1 per size tier, two tiers here (not 70)
    for q in queries:  # merging moved nothing (up to float32 summation order)
        got, want = _scores(one_by_one, q), _scores(whole, q)
        assert got.keys() == want.keys() and all(got[i] == pytest.approx(want[i], abs=1e-5) for i in want)
    assert one_by_one.search_vectors(queries[0], k=1000, filter={"i": 33})[0].id == "d33"
    assert len({p.name for p in (tmp_path / "one" / "segments").iterdir()}) == n_segments  # no leftovers
    one_by_one.verify_files()


def test_a_reader_racing_a_writer_answers_from_one_committed_state(tmp_path, corpus):
    """A reader takes no lock. A writer that commits while it searches (after it ranked, before it
    read the hits' texts), or compacts while it loads (after it read the segment list, before it
    opened the files), changes nothing for it: the search answers from the state it started on,
    whose files and rows stay until it is done. The next search sees the new state."""
    docs, queries = corpus
    path = tmp_path / "idx"
    writer = Index(path, MODEL)
    writer.add_vectors(docs[:40], ids=[f"d{i}" for i in range(40)])
    reader = Index(path)
    before = reader.search_vectors(queries[0], k=3)
    top = before[0].id

    rank, raced = reader._reader.rank, []

    def rank_then_writer_deletes(*args):
        out = rank(*args)
        if not raced:
            raced.append(writer.delete([top]))  # the reader's hit list now names a deleted slot
        return out

    reader._reader.rank = rank_then_writer_deletes
    assert reader.search_vectors(queries[0], k=3) == before  # the state it started on
    assert raced and top not in [h.id for h in reader.search_vectors(queries[0], k=3)]
    assert reader.search_vectors(queries[0], k=3) == Index(path).search_vectors(queries[0], k=3)

    writer.add_vectors(docs[40:60], ids=[f"d{i}" for i in range(40, 60)])  # a segment the reader has not opened
    old = Index(path).search_vectors(queries[0], k=5)
    load, calls = reader._reader._load, []

    def writer_compacts_then_load(*args):
        if not calls:  # deleting a third of everything rewrites every segment and retires the old files
            writer.delete([f"d{i}" for i in range(0, 60, 3) if f"d{i}" != top])
        calls.append(1)
        return load(*args)

    reader._reader._load = writer_compacts_then_load
    assert reader.search_vectors(queries[0], k=5) == old
    assert len(calls) == 1  # loaded once: the retired files were still there
    assert reader.search_vectors(queries[0], k=5) == Index(path).search_vectors(queries[0], k=5)
