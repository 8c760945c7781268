"""Explainable matches: token spans line up with the vectors, and a score splits exactly into its
query tokens' best matches."""

from __future__ import annotations

import numpy as np
import pytest

from lfm_colbert import ColBERT, maxsim
from lfm_colbert.explain import Explanation, TokenMatch, explain, explain_texts

DOCS = [
    "Emperor penguins breed, in the Antarctic winter!",
    "يعيش البطريق في نصف الكرة الجنوبي، ويقضي معظم حياته في البحر.",
    "ペンギンは空を飛べない鳥ですが、翼をひれのように使って海の中を速く泳ぎます。",
    "  Spaces,   tabs\tand an emoji 😀 (with punctuation...)  ",
    "火山爆发是怎么发生的？",
]


def test_spans_line_up_with_the_vectors(tiny_model):
    for is_query in (False, True):
        vectors = tiny_model.encode(DOCS, is_query=is_query)
        spans = tiny_model.token_spans(DOCS, is_query=is_query)
        assert [len(v) for v in vectors] == [len(s) for s in spans]
        for text, s in zip(DOCS, spans):
            assert s.dtype == np.int64 and s.shape[1] == 2
            assert (s[:2] == -1).all()  # BOS and the [Q] / [D] prefix carry no text
            text_rows = s[s[:, 0] >= 0]
            assert len(text_rows) and (text_rows[:, 0] < text_rows[:, 1]).all() and text_rows[:, 1].max() <= len(text)
            assert (np.diff(text_rows[:, 0]) >= 0).all()  # in text order


def test_document_spans_skip_punctuation_and_follow_truncation(tiny_checkpoint):
    model = ColBERT(tiny_checkpoint, backend="torch", dtype="float32", device="cpu", document_length=12)
    text = "Hello, world! " * 20  # far beyond 12 tokens
    with pytest.warns(UserWarning, match="truncated"):
        [vecs] = model.encode([text])
    [spans] = model.token_spans([text])
    assert len(spans) == len(vecs)
    words = [text[a:b].strip() for a, b in spans if a >= 0]
    assert "," not in words and "!" not in words  # skiplisted: no vector, no span
    assert words[:2] == ["Hello", "world"]


def test_query_spans_without_expansion(tiny_checkpoint):
    model = ColBERT(tiny_checkpoint, backend="torch", dtype="float32", device="cpu", do_query_expansion=False)
    queries = ["where do penguins live?", "火山"]
    for v, s in zip(model.encode(queries, is_query=True), model.token_spans(queries, is_query=True)):
        assert len(v) == len(s) < model.settings.query_length


def test_the_matches_sum_to_the_maxsim_score(tiny_model):
    query = "where do penguins live? ペンギン"
    qv = tiny_model.encode([query], is_query=True)[0]
    dv = tiny_model.encode(DOCS)
    explained = explain_texts(tiny_model, query, DOCS)
    np.testing.assert_allclose([e.score for e in explained], maxsim(qv, dv), rtol=1e-5)
    for e, d, text in zip(explained, dv, DOCS):
        assert len(e.matches) == len(qv) == tiny_model.settings.query_length
        sims = qv @ d.T
        for s, m in enumerate(e.matches):
            assert m.doc_token == int(sims[s].argmax())
            assert m.score == pytest.approx(float(sims[s].max()), abs=1e-6)
            if m.doc_span is not None:
                assert text[m.doc_span[0] : m.doc_span[1]] == m.doc_text and m.doc_text == m.doc_text.strip()
        kinds = [m.kind for m in e.matches]
        assert kinds[:2] == ["special", "special"] and "text" in kinds and kinds[-1] == "expansion"
        assert [m.query_token for m in e.matches[:2]] == ["[BOS]", "[Q]"]


def test_query_tokens_name_their_text(tiny_model):
    query = "Penguins, where?"
    [e] = explain_texts(tiny_model, query, ["Penguins live in the south."])
    text = [m for m in e.matches if m.kind == "text"]
    assert "".join(m.query_token for m in text).replace(" ", "") == query.replace(" ", "")
    for m in text:
        assert query[m.query_span[0] : m.query_span[1]] == m.query_token


def test_vectors_from_elsewhere_are_explained_without_text():
    rng = np.random.default_rng(0)
    q = rng.standard_normal((4, 8)).astype(np.float32)
    d = rng.standard_normal((6, 8)).astype(np.float32)
    spans = np.array([[-1, -1], [-1, -1], [0, 3], [4, 6]])
    e = explain(q, d, "abc de", spans, "a document", np.zeros((2, 2), dtype=np.int64))  # 2 spans for 6 vectors
    assert all(m.doc_span is None and m.doc_text is None for m in e.matches)
    assert e.score == pytest.approx(float((q @ d.T).max(1).sum()), rel=1e-6)
    with pytest.raises(ValueError):
        explain(q, d[:, :4], "abc de", spans)


def test_highlights_sum_per_span():
    e = Explanation(1.0, [
        TokenMatch("a", "text", (0, 1), 2, "xy", (5, 7), 0.25),
        TokenMatch("b", "text", (2, 3), 2, "xy", (5, 7), 0.5),
        TokenMatch("[PAD]", "expansion", None, 3, "z", (0, 1), 0.25),
        TokenMatch("[Q]", "special", None, 0, None, None, 0.1),
    ])
    assert e.highlights() == [(0, 1, 0.25), (5, 7, 0.75)]
    assert e.highlights(kinds=("text",)) == [(5, 7, 0.75)]
    assert e.to_dict()["matches"][0]["doc_span"] == (5, 7)
