"""BM25 baseline: per-language tokenizers and retrieval on small multilingual corpora."""

from __future__ import annotations

import pytest

from lfm_colbert.errors import InputError
from lfm_colbert.eval.bm25 import BM25, normalize_arabic, tokenize, tokenizer_kind


def test_english_is_bm25s_stock_recipe():
    import bm25s
    import Stemmer

    texts = ["The cats are running quickly to the houses.", "A dog's bark, 42 times!"]
    expected = bm25s.tokenize(texts, stopwords="en", stemmer=Stemmer.Stemmer("english"), return_ids=False, show_progress=False)
    assert tokenize(texts, "en") == expected
    assert tokenize(texts, "en")[0] == ["cat", "run", "quick", "hous"]


def test_cjk_becomes_character_bigrams():
    toks = tokenize(["東京タワーに行きたい GPU 2024"], "ja")[0]
    assert "東京" in toks and "京タ" in toks and "たい" in toks
    assert "gpu" in toks and "2024" in toks  # non-CJK runs stay whole words
    assert tokenize(["我爱北京"], "zh")[0] == ["我爱", "爱北", "北京"]
    assert tokenize(["中"], "zh")[0] == ["中"]
    assert tokenizer_kind("ko") == tokenizer_kind("th") == "cjk-bigram"


def test_arabic_normalisation_unifies_spellings():
    # the same word with and without diacritics, with hamza-alef vs bare alef, and tatweel
    assert normalize_arabic("أَحْمَد") == normalize_arabic("احمد")
    assert normalize_arabic("كتـــاب") == "كتاب"
    assert normalize_arabic("مدرسة") == normalize_arabic("مدرسه")
    a, b = tokenize(["الكِتَابُ", "الكتاب"], "ar")
    assert a == b and a


def test_devanagari_words_stay_whole():
    # bm25s's \w\w+ regex would cut these words at their vowel signs
    import bm25s

    text = "किताब पढ़ना"
    naive = bm25s.tokenize([text], stopwords=[], return_ids=False, show_progress=False)[0]
    ours = tokenize([text], "hi")[0]
    assert len(ours) == 2
    assert len(naive) != 2


@pytest.mark.parametrize(
    "lang, docs, query, want",
    [
        ("en", ["Penguins live in Antarctica.", "Camels live in deserts.", "Rust is a language."], "where do penguins live", 0),
        ("ja", ["ペンギンは南極に住んでいます。", "ラクダは砂漠に住んでいます。", "東京は日本の首都です。"], "日本の首都はどこ", 2),
        ("zh", ["企鹅生活在南极洲。", "骆驼生活在沙漠里。", "北京是中国的首都。"], "中国的首都", 2),
        ("ar", ["تعيش البطاريق في القارة القطبية الجنوبية.", "تعيش الجِمال في الصحراء.", "القاهرة عاصمة مصر."], "ما هي عاصمة مصر", 2),
        ("de", ["Pinguine leben in der Antarktis.", "Kamele leben in Wüsten.", "Berlin ist die Hauptstadt."], "Wo leben Kamele?", 1),
    ],
)
def test_retrieves_the_matching_document(lang, docs, query, want):
    bm = BM25(lang=lang).index([f"d{i}" for i in range(len(docs))], docs)
    idx, scores = bm.search([query], k=3)
    assert idx[0][0] == want and scores[0][0] > scores[0][1]
    run = bm.run(["q"], [query], k=2)
    assert list(run["q"])[0] == f"d{want}" and len(run["q"]) == 2


def test_k_is_capped_and_errors_are_clear():
    bm = BM25().index(["a", "b"], ["one text", "another text"])
    idx, _ = bm.search(["text"], k=50)
    assert idx.shape == (1, 2)
    with pytest.raises(InputError, match="empty"):
        BM25().index([], [])
    with pytest.raises(InputError, match="index"):
        BM25().search(["q"])
