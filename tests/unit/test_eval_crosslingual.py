"""Cross-lingual pair datasets (XQuAD-R, Tatoeba layouts) and the language x language matrix."""

from __future__ import annotations

import json

import pytest

from lfm_colbert.errors import DatasetError
from lfm_colbert.eval.crosslingual import crosslingual_pairs, matrix_markdown, resolve_folder
from lfm_colbert.eval.runner import BM25System
from lfm_colbert.eval.metrics import evaluate


def _xquad_file(path, sentences, questions):
    """One paragraph; questions are (id, text, answer sentence index)."""
    breaks, pos = [], 0
    for s in sentences:
        breaks.append([pos, pos + len(s)])
        pos += len(s) + 1
    qas = [{"id": qid, "question": q, "answers": [{"answer_start": breaks[i][0] + 1, "text": "x"}]} for qid, q, i in questions]
    para = {"context": " ".join(sentences), "sentences": sentences, "sentence_breaks": breaks, "qas": qas}
    path.write_text(json.dumps({"data": [{"title": "t", "paragraphs": [para]}], "version": "1"}))


@pytest.fixture
def xquad(tmp_path):
    root = tmp_path / "xquad-r"
    root.mkdir()
    _xquad_file(root / "en.json", ["Cats purr softly.", "Dogs bark loudly.", "Fish swim."],
                [("a", "Which animal purrs?", 0), ("b", "Which animal barks?", 1)])
    _xquad_file(root / "es.json", ["Los perros ladran fuerte.", "Los gatos ronronean.", "Los peces nadan."],
                [("a", "¿Qué hacen los gatos?", 1), ("b", "¿Qué hacen los perros?", 0)])
    return root


def test_xquad_pairs_link_parallel_questions(xquad):
    kind, langs, pairs = crosslingual_pairs(str(xquad), ["en", "es"])
    assert kind == "xquad-r" and langs == ["en", "es"]
    by = {(d.lang, d.doc_lang): d for d in pairs}
    assert set(by) == {("en", "en"), ("en", "es"), ("es", "en"), ("es", "es")}
    en_es = by[("en", "es")]
    assert en_es.queries["a"] == "Which animal purrs?"
    assert en_es.corpus[next(iter(en_es.qrels["a"]))] == "Los gatos ronronean."  # the es answer sentence
    assert by[("es", "en")].corpus[next(iter(by[("es", "en")].qrels["b"]))] == "Dogs bark loudly."
    for d in pairs:
        d.validate()


def test_bm25_diagonal_beats_off_diagonal(xquad):
    _, langs, pairs = crosslingual_pairs(str(xquad), ["en", "es"])
    bm = BM25System()
    cells = {(d.lang, d.doc_lang): evaluate(d.qrels, bm.run(d), k=1)["ndcg@1"] for d in pairs}
    assert cells[("es", "es")] == 1.0  # shared words within a language
    assert cells[("en", "es")] < 1.0
    table = matrix_markdown(cells, langs, "toy")
    assert "| en |" in table and "| query \\ docs | en | es | mean |" in table


def test_tatoeba_pairs(tmp_path):
    root = tmp_path / "tatoeba"
    root.mkdir()
    (root / "tatoeba.spa-eng.spa").write_text("hola mundo\nel gato duerme\n")
    (root / "tatoeba.spa-eng.eng").write_text("hello world\nthe cat sleeps\n")
    kind, langs, pairs = crosslingual_pairs(str(root), ["es"])
    assert kind == "tatoeba" and langs == ["en", "es"]
    assert [(d.lang, d.doc_lang) for d in pairs] == [("es", "en"), ("en", "es")]
    assert pairs[0].queries["q1"] == "el gato duerme" and pairs[0].corpus["d1"] == "the cat sleeps"
    assert pairs[1].queries["q1"] == "the cat sleeps" and pairs[1].corpus["d1"] == "el gato duerme"
    assert pairs[0].qrels == {"q0": {"d0": 1}, "q1": {"d1": 1}}
    # an identical sentence on both sides must be found (ids differ, so it is not dropped as "self")
    assert evaluate(pairs[0].qrels, {"q0": {"d0": 1.0}, "q1": {"d1": 1.0}})["ndcg@10"] == 1.0
    with pytest.raises(DatasetError, match="Tatoeba has no 'xx'"):
        crosslingual_pairs(str(root), ["xx"])
    (root / "tatoeba.spa-eng.eng").write_text("hello world\n")
    with pytest.raises(DatasetError, match="must align"):
        crosslingual_pairs(str(root), ["es"])


def test_bad_specs(tmp_path, xquad):
    with pytest.raises(DatasetError, match="unknown cross-lingual set"):
        resolve_folder("mkqa", tmp_path)
    with pytest.raises(DatasetError, match="no such folder"):
        resolve_folder("xquad-r", tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="XQuAD-R has no fr"):
        crosslingual_pairs(str(xquad), ["en", "fr"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="neither XQuAD-R"):
        resolve_folder(str(tmp_path / "empty"))
