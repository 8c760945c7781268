"""The lexical baseline: BM25 through bm25s, with a tokenizer chosen per language.

bm25s's own tokenizer (a `\\w\\w+` regex, stop words, a Snowball stemmer) is right for languages
written with spaces in Latin, Cyrillic or Greek script, and it is what this module uses for them,
so English BM25 here is bm25s's stock recipe. Elsewhere it fails:
  - Chinese, Japanese, Thai have no spaces, so a "word" is a whole clause: use overlapping
    character bigrams (Korean too; its space-separated eojeol glue particles onto words).
  - Arabic (and Persian) spell one word several ways: strip diacritics and tatweel and fold
    letter variants before stemming.
  - Devanagari and other Indic scripts carry vowel signs that `\\w` does not match, which would cut
    words apart: split on Unicode categories instead.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from typing import Sequence

import numpy as np

from lfm_colbert.errors import InputError

# ISO 639-1 -> PyStemmer (Snowball) algorithm
_STEMMERS = {
    "ar": "arabic", "ca": "catalan", "cs": "czech", "da": "danish", "de": "german", "el": "greek",
    "en": "english", "es": "spanish", "eu": "basque", "fa": "persian", "fi": "finnish", "fr": "french",
    "ga": "irish", "hi": "hindi", "hu": "hungarian", "hy": "armenian", "id": "indonesian", "it": "italian",
    "lt": "lithuanian", "ne": "nepali", "nl": "dutch", "no": "norwegian", "pl": "polish", "pt": "portuguese",
    "ro": "romanian", "ru": "russian", "sr": "serbian", "sv": "swedish", "ta": "tamil", "tr": "turkish",
}
# ISO 639-1 -> bm25s stop-word list name
_STOPWORDS = {
    "en": "en", "de": "de", "es": "es", "fr": "fr", "it": "it", "nl": "nl", "pt": "pt", "ru": "ru",
    "sv": "sv", "da": "da", "no": "no", "tr": "tr",
}
CJK_LANGS = {"zh", "ja", "ko", "th", "lo", "my", "km"}
ARABIC_LANGS = {"ar", "fa", "ur"}
# scripts with combining vowel signs, where `\w\w+` cuts words apart
_INDIC_LANGS = {"hi", "bn", "mr", "ne", "ta", "te", "kn", "ml", "gu", "pa", "si"}

_ARABIC_DIACRITICS = re.compile("[\u0610-\u061a\u064b-\u065f\u0670\u06d6-\u06ed\u0640]")  # harakat + tatweel
_ARABIC_FOLD = str.maketrans({"أ": "ا", "إ": "ا", "آ": "ا", "ٱ": "ا", "ى": "ي", "ة": "ه", "ؤ": "و", "ئ": "ي", "ک": "ك", "ی": "ي"})


def _is_wordchar(ch: str) -> bool:
    return unicodedata.category(ch)[0] in "LNM"  # letters, numbers, combining marks


def _words(text: str) -> list[str]:
    """Unicode-aware word split: runs of letters, digits and combining marks."""
    out, cur = [], []
    for ch in text:
        if _is_wordchar(ch):
            cur.append(ch)
        elif cur:
            out.append("".join(cur))
            cur = []
    if cur:
        out.append("".join(cur))
    return out


def _is_cjk(ch: str) -> bool:
    o = ord(ch)
    return (
        0x3040 <= o <= 0x30FF  # hiragana, katakana
        or 0x3400 <= o <= 0x9FFF  # CJK ideographs (+ ext A)
        or 0xAC00 <= o <= 0xD7AF  # hangul syllables
        or 0x0E00 <= o <= 0x0EFF  # thai, lao
        or 0xF900 <= o <= 0xFAFF
        or 0x20000 <= o <= 0x2FFFF
    )


def _bigrams(word: str) -> list[str]:
    """Script-aware bigrams: CJK/Thai runs become overlapping character bigrams, other runs stay words."""
    out: list[str] = []
    for is_cjk, run in _script_runs(word):
        if not is_cjk:
            out.append(run)
        elif len(run) == 1:
            out.append(run)
        else:
            out.extend(run[i : i + 2] for i in range(len(run) - 1))
    return out


def _script_runs(word: str) -> list[tuple[bool, str]]:
    runs: list[tuple[bool, str]] = []
    for ch in word:
        c = _is_cjk(ch) or (unicodedata.category(ch)[0] == "M" and bool(runs) and runs[-1][0])
        if runs and runs[-1][0] == c:
            runs[-1] = (c, runs[-1][1] + ch)
        else:
            runs.append((c, ch))
    return runs


def normalize_arabic(text: str) -> str:
    """Strip diacritics and tatweel, fold alef/ya/ta-marbuta variants: one spelling per word."""
    return _ARABIC_DIACRITICS.sub("", text).translate(_ARABIC_FOLD)


def _stemmer(lang: str):
    import Stemmer

    name = _STEMMERS.get(lang)
    return Stemmer.Stemmer(name) if name else None


def tokenizer_kind(lang: str) -> str:
    lang = lang.lower()
    if lang in CJK_LANGS:
        return "cjk-bigram"
    if lang in ARABIC_LANGS:
        return "arabic"
    if lang in _INDIC_LANGS:
        return "unicode-words"
    return "bm25s"


def tokenize(texts: Sequence[str], lang: str = "en") -> list[list[str]]:
    """Tokenize `texts` for BM25 in language `lang` (ISO 639-1); see the module docstring."""
    lang = (lang or "en").lower()
    kind = tokenizer_kind(lang)
    stemmer = _stemmer(lang)
    if kind == "bm25s":
        import bm25s

        return bm25s.tokenize(
            list(texts),
            stopwords=_STOPWORDS.get(lang, []),
            stemmer=stemmer,
            return_ids=False,
            show_progress=False,
        )
    out: list[list[str]] = []
    for text in texts:
        text = unicodedata.normalize("NFKC", text).lower()
        if kind == "arabic":
            text = normalize_arabic(text)
        words = _words(text)
        if kind == "cjk-bigram":
            words = [t for w in words for t in _bigrams(w)]
        elif stemmer is not None:
            words = stemmer.stemWords(words)
        out.append(words)
    return out


class BM25:
    """BM25 over a corpus (bm25s defaults: Lucene variant, k1=1.5, b=0.75)."""

    def __init__(self, lang: str = "en", k1: float = 1.5, b: float = 0.75, method: str = "lucene"):
        self.lang = lang
        self.params = {"k1": k1, "b": b, "method": method}
        self._retriever = None
        self.doc_ids: list[str] = []

    def index(self, doc_ids: Sequence[str], texts: Sequence[str]) -> "BM25":
        import bm25s

        if not texts:
            raise InputError("BM25: the corpus is empty")
        logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs each index build at DEBUG
        self.doc_ids = list(doc_ids)
        self._retriever = bm25s.BM25(**self.params)
        self._retriever.index(tokenize(texts, self.lang), show_progress=False)
        return self

    def search(self, queries: Sequence[str], k: int = 100, lang: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k per query: (doc indices (n, k) int, scores (n, k) float32). `lang` is the queries'
        language when it differs from the corpus's (cross-lingual)."""
        if self._retriever is None:
            raise InputError("BM25: call index() before search()")
        k = min(k, len(self.doc_ids))
        tokens = tokenize(queries, lang or self.lang)
        docs, scores = self._retriever.retrieve(tokens, k=k, show_progress=False, n_threads=0)
        return np.asarray(docs), np.asarray(scores, dtype=np.float32)

    def run(self, query_ids: Sequence[str], queries: Sequence[str], k: int = 100, lang: str | None = None) -> dict:
        """A run {query_id: {doc_id: score}} of each query's top-k documents."""
        idx, scores = self.search(queries, k=k, lang=lang)
        return {
            q: {self.doc_ids[j]: float(s) for j, s in zip(idx[i], scores[i])} for i, q in enumerate(query_ids)
        }
