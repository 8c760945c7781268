"""Cross-lingual retrieval from parallel data: queries in one language, documents in another,
reported as a language x language matrix (rows: query language, columns: document language).

XQuAD-R (LAReQA): 1,190 questions per language over 240 parallel paragraphs. Documents are the
answer sentences of the document language; the relevant one is the sentence holding the answer
to the same question (same id) in that language. The diagonal is monolingual retrieval.

Tatoeba (LASER): 1,000 sentence pairs per language with English. Query: line i in one language;
corpus: the 1,000 lines of the other; relevant: line i. Only xx->en and en->xx cells exist.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from lfm_colbert.errors import DatasetError
from lfm_colbert.eval.datasets import RetrievalDataset

XQUAD_R_LANGS = ["ar", "de", "el", "en", "es", "hi", "ru", "th", "tr", "vi", "zh"]
TATOEBA_CODES = {"ar": "ara", "zh": "cmn", "de": "deu", "fr": "fra", "it": "ita", "ja": "jpn", "ko": "kor", "pt": "por", "ru": "rus", "es": "spa"}


@dataclass
class XquadLanguage:
    questions: dict[str, str]  # question id -> text
    sentences: dict[str, str]  # "p{paragraph}-s{sentence}" -> text
    answer: dict[str, str]  # question id -> id of the sentence holding its answer


def default_data_dir() -> Path:
    """$LFM_COLBERT_DATA, else ../shared/data (the project's read-only data folder)."""
    return Path(os.environ.get("LFM_COLBERT_DATA", "../shared/data")).expanduser()


def resolve_folder(spec: str, data_dir: str | os.PathLike | None = None) -> tuple[str, Path]:
    """'xquad-r' / 'tatoeba' (looked up under data_dir) or a folder path -> (kind, folder)."""
    path = Path(spec).expanduser()
    if not path.is_dir():
        base = Path(data_dir) if data_dir else default_data_dir()
        names = {"xquad-r": "xquad-r", "xquad": "xquad-r", "tatoeba": "tatoeba-laser", "tatoeba-laser": "tatoeba-laser"}
        if spec.lower() not in names:
            raise DatasetError(f"unknown cross-lingual set {spec!r}: use xquad-r, tatoeba or a folder path")
        path = base / names[spec.lower()]
        if not path.is_dir():
            raise DatasetError(f"{path}: no such folder (set --data-dir or LFM_COLBERT_DATA to the data folder)")
    if any(path.glob("tatoeba.*-eng.eng")):
        return "tatoeba", path
    if any(path.glob("*.json")):
        return "xquad-r", path
    raise DatasetError(f"{path}: neither XQuAD-R (<lang>.json) nor Tatoeba (tatoeba.xxx-eng.*) files found")


def load_xquad_language(path: Path, limit: int | None = None) -> XquadLanguage:
    """One XQuAD-R language file (SQuAD JSON with `sentences` and `sentence_breaks`); with `limit`,
    only the first paragraphs, until they hold `limit` questions (paragraph order is parallel)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))["data"]
    except (OSError, ValueError, KeyError) as exc:
        raise DatasetError(f"{path}: not an XQuAD-R file ({exc})") from None
    questions, sentences, answer = {}, {}, {}
    p_index = 0
    for article in data:
        for para in article["paragraphs"]:
            if limit is not None and len(questions) >= limit:
                break
            for s_index, sent in enumerate(para["sentences"]):
                sentences[f"p{p_index}-s{s_index}"] = sent
            for qa in para["qas"]:
                start = qa["answers"][0]["answer_start"]
                hit = [i for i, (a, b) in enumerate(para["sentence_breaks"]) if a <= start <= b]
                if not hit:
                    raise DatasetError(f"{path}: question {qa['id']}: no sentence holds answer_start {start}")
                questions[qa["id"]] = qa["question"]
                answer[qa["id"]] = f"p{p_index}-s{hit[0]}"
            p_index += 1
    return XquadLanguage(questions, sentences, answer)


def xquad_pairs(folder: Path, langs: list[str], limit: int | None = None) -> Iterator[RetrievalDataset]:
    """Every (query language, document language) dataset of XQuAD-R over `langs`."""
    bad = [lang for lang in langs if not (folder / f"{lang}.json").is_file()]
    if bad:
        have = sorted(p.stem for p in folder.glob("*.json"))
        raise DatasetError(f"XQuAD-R has no {', '.join(bad)} in {folder}; available: {', '.join(have)}")
    data = {lang: load_xquad_language(folder / f"{lang}.json", limit) for lang in langs}
    for lq in langs:
        for ld in langs:
            q, d = data[lq], data[ld]
            shared = [qid for qid in q.questions if qid in d.answer]
            yield RetrievalDataset(
                name=f"xquad-r:{lq}->{ld}",
                corpus=d.sentences,
                queries={qid: q.questions[qid] for qid in shared},
                qrels={qid: {d.answer[qid]: 1} for qid in shared},
                lang=lq,
                doc_lang=ld,
                meta={"corpus_key": f"xquad-r:{ld}:sentences", "queries_key": f"xquad-r:{lq}:questions"},
            )


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").rstrip("\n").split("\n")
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read ({exc.strerror})") from None


def tatoeba_pairs(folder: Path, langs: list[str], limit: int | None = None) -> Iterator[RetrievalDataset]:
    """xx->en and en->xx datasets of Tatoeba for every non-English language in `langs`
    (with `limit`, the first `limit` aligned lines only)."""
    for lang in langs:
        if lang == "en":
            continue
        code = TATOEBA_CODES.get(lang)
        if code is None or not (folder / f"tatoeba.{code}-eng.{code}").is_file():
            raise DatasetError(f"Tatoeba has no {lang!r} in {folder}; available: {', '.join(TATOEBA_CODES)}")
        xx = _read_lines(folder / f"tatoeba.{code}-eng.{code}")
        en = _read_lines(folder / f"tatoeba.{code}-eng.eng")
        if len(xx) != len(en):
            raise DatasetError(f"{folder}: tatoeba.{code}-eng has {len(xx)} vs {len(en)} lines; they must align")
        xx, en = xx[:limit], en[:limit]
        # distinct query and document ids: the evaluator drops a document whose id equals the query's
        qids, dids = [f"q{i}" for i in range(len(xx))], [f"d{i}" for i in range(len(xx))]
        for lq, ld in ((lang, "en"), ("en", lang)):
            yield RetrievalDataset(
                name=f"tatoeba:{lq}->{ld}",
                corpus=dict(zip(dids, xx if ld == lang else en)),
                queries=dict(zip(qids, xx if lq == lang else en)),
                qrels={q: {d: 1} for q, d in zip(qids, dids)},
                lang=lq,
                doc_lang=ld,
                meta={"corpus_key": f"tatoeba:{code}:{ld}", "queries_key": f"tatoeba:{code}:{lq}"},
            )


def crosslingual_pairs(spec: str, langs: list[str] | None, data_dir: str | os.PathLike | None = None,
                       limit: int | None = None) -> tuple[str, list[str], list[RetrievalDataset]]:
    """(kind, languages, pair datasets) for `--crosslingual SPEC --langs ...`; `limit` keeps the
    first aligned items only (Tatoeba lines, XQuAD-R questions with their paragraphs)."""
    kind, folder = resolve_folder(spec, data_dir)
    if kind == "xquad-r":
        langs = langs or XQUAD_R_LANGS
        return kind, langs, list(xquad_pairs(folder, langs, limit))
    langs = langs or ["en"] + sorted(TATOEBA_CODES)
    if "en" not in langs:
        langs = ["en"] + langs
    return kind, langs, list(tatoeba_pairs(folder, langs, limit))


def matrix_markdown(cells: dict[tuple[str, str], float], langs: list[str], title: str) -> str:
    """A markdown language x language matrix; rows are query languages, columns document languages."""
    lines = [f"**{title}** (rows: query language, columns: document language)", ""]
    lines.append("| query \\ docs | " + " | ".join(langs) + " | mean |")
    lines.append("|---" * (len(langs) + 2) + "|")
    for lq in langs:
        row = [cells.get((lq, ld)) for ld in langs]
        vals = [v for v in row if v is not None]
        mean = f"{sum(vals) / len(vals):.3f}" if vals else "—"
        lines.append(f"| {lq} | " + " | ".join("—" if v is None else f"{v:.3f}" for v in row) + f" | {mean} |")
    return "\n".join(lines)
