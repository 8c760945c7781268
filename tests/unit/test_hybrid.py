"""Hybrid search: fusion on constructed rankings, the lexical index kept in step with every write,
filters on both sides, languages, and indexes made before the lexical index existed."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from lfm_colbert.errors import IndexFormatError, InputError
from lfm_colbert.index import Index, fusion, lexical

MODEL = {"model_id": "vectors-only", "variant": "none", "dim": 8, "fingerprint": "hybrid"}
TEXTS = [
    "Penguins live in the cold south and eat fish.",
    "Polar bears live in the Arctic north.",
    "The sun is a star at the centre of the solar system.",
    "Emperor penguins huddle together through the winter.",
    "Fish swim in rivers, lakes and the sea.",
    "Stars are balls of hot gas that shine.",
    "企鹅生活在南极洲寒冷的海岸。",
    "البطاريق تعيش في الجنوب البارد",
]


def _vectors(n, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((4, 8)).astype(np.float32) for _ in range(n)]


@pytest.fixture()
def index(tmp_path):
    ix = Index(tmp_path / "idx", MODEL)
    ix.add_vectors(_vectors(len(TEXTS)), ids=[f"d{i}" for i in range(len(TEXTS))], texts=TEXTS,
                   metadata=[{"n": i, "animal": i in (0, 1, 3, 6, 7)} for i in range(len(TEXTS))])
    yield ix
    ix.close()


def _in_step(ix):
    assert lexical.stored_postings(ix.catalog) == lexical.expected_postings(ix.catalog)


# -- fusion on constructed rankings -------------------------------------------------------------------
def test_rrf_sums_reciprocal_ranks():
    sem = [("a", 9.0), ("b", 8.0), ("c", 7.0)]
    lex = [("c", 30.0), ("d", 20.0), ("a", 10.0)]
    got = dict(fusion.rrf(sem, lex, 10))
    assert got["a"] == pytest.approx(1 / 61 + 1 / 63)
    assert got["c"] == pytest.approx(1 / 63 + 1 / 61)
    assert got["b"] == pytest.approx(1 / 62)
    assert got["d"] == pytest.approx(1 / 62)
    # a and c tie: the better semantic rank first; then b before d for the same reason
    assert [d for d, _ in fusion.rrf(sem, lex, 10)] == ["a", "c", "b", "d"]
    assert [d for d, _ in fusion.rrf(sem, lex, 2)] == ["a", "c"]


def test_blend_normalises_each_side_and_weights_by_alpha():
    sem = [("a", 10.0), ("b", 6.0), ("c", 2.0)]
    lex = [("c", 5.0), ("d", 3.0), ("a", 1.0)]
    got = dict(fusion.blend(sem, lex, 10, 0.25))
    assert got["a"] == pytest.approx(0.25 * 1.0 + 0.75 * 0.0)
    assert got["b"] == pytest.approx(0.25 * 0.5)
    assert got["c"] == pytest.approx(0.25 * 0.0 + 0.75 * 1.0)
    assert got["d"] == pytest.approx(0.75 * 0.5)
    assert [d for d, _ in fusion.blend(sem, lex, 10, 1.0)][:3] == ["a", "b", "c"]
    assert [d for d, _ in fusion.blend(sem, lex, 10, 0.0)][:3] == ["c", "d", "a"]
    assert dict(fusion.blend([("x", 3.0), ("y", 3.0)], [], 5, 0.5)) == {"x": 0.5, "y": 0.5}  # one score: all 1


def test_alpha_one_and_zero_rank_as_the_pure_modes(index):
    for q in ["penguins live in the south", "stars shine", "fish"]:
        sem = index.search_vectors(_vectors(1, 7)[0], k=5)
        lex = index.search(q, k=5, mode="lexical")
        assert lex, q
        hyb1 = fusion.blend([(h.id, h.score) for h in sem], [(h.id, h.score) for h in lex], 5, 1.0)
        assert [d for d, _ in hyb1] == [h.id for h in sem]
        hyb0 = fusion.blend([(h.id, h.score) for h in sem], [(h.id, h.score) for h in lex], 5, 0.0)
        assert [d for d, _ in hyb0][: len(lex)] == [h.id for h in lex]


class _FixedModel:
    """A stand-in encoder: every query is the same (4, 8) array (the index's model check is bypassed)."""

    def __init__(self, q):
        self.q = q

    def encode(self, texts, **kw):
        return [self.q for _ in texts]


def test_hybrid_through_index_search(index):
    q = _vectors(1, 7)[0]
    index._model_obj = _FixedModel(q)
    text = "penguins live in the south"
    sem = index.search(text, k=8)
    assert [h.id for h in sem] == [h.id for h in index.search_vectors(q, k=8)]
    lex = index.search(text, k=8, mode="lexical")
    rrf = index.search(text, k=8, mode="hybrid")
    want = fusion.rrf([(h.id, h.score) for h in sem], [(h.id, h.score) for h in lex], 8)
    assert [(h.id, round(h.score, 9)) for h in rrf] == [(d, round(s, 9)) for d, s in want]
    assert [h.id for h in index.search(text, k=8, mode="hybrid", alpha=1.0)] == [h.id for h in sem]
    assert [h.id for h in index.search(text, k=8, mode="hybrid", alpha=0)][: len(lex)] == [h.id for h in lex]
    both = index.search([text, "stars"], k=3, mode="hybrid", alpha=0.5)
    assert len(both) == 2 and all(len(h) == 3 for h in both)
    assert all(h.text == TEXTS[int(h.id[1:])] for h in rrf)  # the Hit carries text and metadata as always


def test_search_vectors_takes_the_texts_for_the_keyword_side(index):
    """What a server that encoded the queries itself calls: the same hits as search(text, mode=...)."""
    qs = _vectors(2, 7)
    texts = ["penguins live in the south", "stars"]
    for mode, alpha in (("hybrid", None), ("hybrid", 0.3), ("lexical", None)):
        index._model_obj = _FixedModel(qs[0])
        want = index.search(texts[0], k=5, mode=mode, alpha=alpha)
        got = index.search_vectors(qs[0], k=5, texts=[texts[0]], mode=mode, alpha=alpha)
        assert [(h.id, h.score) for h in got] == [(h.id, h.score) for h in want]
    assert len(index.search_vectors(qs, k=3, texts=texts, mode="hybrid")) == 2
    for bad in (None, [], ["one"] * 3, [""] * 2):
        with pytest.raises(InputError, match="texts"):
            index.search_vectors(qs, k=3, texts=bad, mode="hybrid")


def test_filters_apply_to_both_sides(index):
    index._model_obj = _FixedModel(_vectors(1, 7)[0])
    for mode in ("lexical", "hybrid"):
        hits = index.search("penguins fish stars sun", k=8, mode=mode, filter={"animal": True})
        assert hits and all(h.metadata["animal"] for h in hits), mode
    lex = index.search("penguins fish", k=8, mode="lexical", filter={"n": {"$gte": 3}})
    assert {h.id for h in lex} == {"d3", "d4"}


def test_bad_mode_and_alpha_are_input_errors(index):
    for kw in ({"mode": "keyword"}, {"mode": None}, {"mode": "hybrid", "alpha": 1.5}, {"mode": "hybrid", "alpha": -0.1},
               {"mode": "hybrid", "alpha": float("nan")}, {"mode": "hybrid", "alpha": "0.5"}, {"mode": "hybrid", "alpha": True},
               {"mode": "lexical", "alpha": 0.5}, {"alpha": 0.5}):
        with pytest.raises(InputError):
            index.search("penguins", **kw)


def test_languages_cjk_and_arabic(index):
    assert [h.id for h in index.search("企鹅", mode="lexical")] == ["d6"]  # CJK bigrams match inside a clause
    assert [h.id for h in index.search("بطاريق", mode="lexical")] == []  # a different word ...
    assert [h.id for h in index.search("البطاريق", mode="lexical")] == ["d7"]
    assert [h.id for h in index.search("البطاريق الجنوب", mode="lexical")] == ["d7"]
    langs = dict(index.catalog._query("SELECT d.id, l.lang FROM docs d JOIN lex_docs l ON l.slot = d.segment * 4294967296 + d.row"))
    assert langs["d6"] == "zh" and langs["d7"] == "ar" and langs["d0"] == "en"
    index.add_vectors(_vectors(1, 3), ids=["fr"], texts=["Les manchots vivent au sud"], metadata=[{"lang": "fr"}])
    langs = dict(index.catalog._query("SELECT d.id, l.lang FROM docs d JOIN lex_docs l ON l.slot = d.segment * 4294967296 + d.row"))
    assert langs["fr"] == "fr"
    assert [h.id for h in index.search("manchot", mode="lexical")] == ["fr"]  # French stemming: manchots -> manchot
    _in_step(index)


def test_upsert_delete_compact_merge_keep_lexical_in_step(index):
    _in_step(index)
    index.add_vectors(_vectors(1, 5), ids=["d0"], texts=["Kangaroos hop across Australia."], upsert=True)
    _in_step(index)
    assert [h.id for h in index.search("kangaroos", mode="lexical")] == ["d0"]
    assert "d0" not in [h.id for h in index.search("penguins", mode="lexical")]
    index.delete(["d3"])
    _in_step(index)
    assert [h.id for h in index.search("emperor", mode="lexical")] == []
    index.compact()  # moves documents into new segments: postings copied, old ones purged
    _in_step(index)
    live = index.catalog._query("SELECT COUNT(*) FROM docs WHERE removed IS NULL")[0][0]
    assert index.catalog._query("SELECT COUNT(*) FROM lex_docs")[0][0] == live
    for i in range(8):  # small adds merge into one segment
        index.add_vectors(_vectors(1, 20 + i), ids=[f"m{i}"], texts=[f"merge word{i} penguins"])
    _in_step(index)
    assert {h.id for h in index.search("penguins", k=20, mode="lexical")} == {f"m{i}" for i in range(8)}  # d0 replaced, d3 deleted
    assert len(index.catalog.segments()) < 8  # they were merged
    index.add_vectors(_vectors(1, 40), ids=["novec"])  # no text: no postings, still searchable semantically
    _in_step(index)


def test_a_pinned_state_scores_its_own_documents(index):
    with index._reader.snapshot() as state:
        before = index._lexicon.rank(state, ["penguins"], 10, None)
        index.delete(["d0"])
        index.add_vectors(_vectors(1, 9), ids=["p"], texts=["penguins penguins penguins"])
        again = index._lexicon.rank(state, ["penguins"], 10, None)
    assert before == again
    assert {h.id for h in index.search("penguins", mode="lexical")} == {"d3", "p"}


def test_an_index_made_before_the_lexical_index(index, tmp_path, drop_lexical):
    path = index.path
    index.close()
    drop_lexical(path)
    ix = Index(path)
    assert len(ix.search_vectors(_vectors(1, 7)[0], k=3)) == 3  # semantic search works as before
    with pytest.raises(IndexFormatError, match="--rebuild-lexical"):
        ix.search("penguins", mode="lexical")
    ix.add_vectors(_vectors(1, 8), ids=["new"], texts=["penguins again"])  # a write builds it
    assert {h.id for h in ix.search("penguins", mode="lexical")} == {"d0", "d3", "new"}
    _in_step(ix)
    ix.close()
    drop_lexical(path)
    ix = Index(path)
    assert ix.rebuild_lexical() == len(TEXTS) + 1
    assert {h.id for h in ix.search("penguins", mode="lexical")} == {"d0", "d3", "new"}
    ix.close()


def test_a_commit_by_an_older_version_is_noticed_and_rebuilt(index):
    # An older lfm-colbert writes documents but no postings: its commit leaves lexical_generation behind.
    gen = index.catalog.generation()
    index.add_vectors(_vectors(1, 8), ids=["old"], texts=["penguins written by an older version"])
    conn = sqlite3.connect(index.path / "catalog.sqlite")
    conn.execute("UPDATE meta SET value = ? WHERE key = 'lexical_generation'", (str(gen),))
    conn.commit()
    conn.close()
    with pytest.raises(IndexFormatError, match="older lfm-colbert"):
        index.search("penguins", mode="lexical")
    index.delete(["d1"])  # the next write rebuilds it
    assert {h.id for h in index.search("penguins", mode="lexical")} == {"d0", "d3", "old"}
    _in_step(index)


def test_lexical_reads_racing_a_writer_see_one_committed_state(tmp_path):
    import threading

    ix = Index(tmp_path / "race", MODEL)
    ids = [f"r{i}" for i in range(20)]
    ix.add_vectors(_vectors(20), ids=ids, texts=[f"penguin n{i:02d} v0" for i in range(20)])
    done = threading.Event()
    errors = []

    def write():
        try:
            for v in range(1, 13):  # each upsert replaces all 20 in one commit; merges and compactions follow
                ix.add_vectors(_vectors(20, v), ids=ids, texts=[f"penguin n{i:02d} v{v}" for i in range(20)], upsert=True)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            done.set()

    t = threading.Thread(target=write)
    t.start()
    seen = set()
    while not done.is_set() or not seen:
        hits = ix.search("penguin", k=50, mode="lexical")
        assert sorted(h.id for h in hits) == sorted(ids)  # every document once, never a replaced one too
        versions = {h.text.split()[-1] for h in hits}
        assert len(versions) == 1  # all from one commit
        assert len({round(h.score, 9) for h in hits}) == 1  # statistics of that one state
        seen |= versions
    t.join()
    assert not errors and len(seen) >= 2  # the reads did race the commits
    _in_step(ix)
    ix.close()


def test_info_describes_the_keyword_index(index, drop_lexical):
    info = index.info()["lexical"]
    assert info["up_to_date"] and info["documents_with_postings"] == len(TEXTS) and info["k1"] == 1.5
    path = index.path
    index.close()
    drop_lexical(path)
    with Index(path) as ix:
        assert ix.info()["lexical"] is None
