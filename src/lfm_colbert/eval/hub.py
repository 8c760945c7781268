"""Evaluation sets from the Hugging Face hub, through the `datasets` library: NanoBEIR, its
multilingual extension, and MIRACL dev pools. Each download is converted once into a plain BEIR
folder under the cache (`~/.cache/lfm-colbert/datasets/`), so later runs need no network at all.

Hub layouts this module reads:
  NanoBEIR             zeta-alpha-ai/Nano<Set>; configs corpus, queries, qrels; split "train"
  NanoBEIR multilingual LiquidAI/nanobeir-multilingual-extended; config Nano<Set>_<lang> with splits
                        corpus and queries (qrels, when absent, come from the English set: translations
                        keep the ids)
  MIRACL               mteb/MIRACLRetrievalHardNegatives (MIRACL dev, corpus pooled from the top 250
                        of BM25, mE5-large and e5-mistral per query); configs <lang>-corpus,
                        <lang>-queries, <lang>-qrels
"""

from __future__ import annotations

import difflib
import os
import random
import re
from typing import Any, Iterable

from lfm_colbert.errors import DatasetError
from lfm_colbert.eval.datasets import RetrievalDataset, cache_root, doc_text, load_cached, save_beir_folder

# lower-case key -> NanoBEIR set name on the hub
NANOBEIR_SETS = {
    "arguana": "NanoArguAna",
    "climatefever": "NanoClimateFEVER",
    "dbpedia": "NanoDBPedia",
    "fever": "NanoFEVER",
    "fiqa2018": "NanoFiQA2018",
    "hotpotqa": "NanoHotpotQA",
    "msmarco": "NanoMSMARCO",
    "nfcorpus": "NanoNFCorpus",
    "nq": "NanoNQ",
    "quoraretrieval": "NanoQuoraRetrieval",
    "scidocs": "NanoSCIDOCS",
    "scifact": "NanoSciFact",
    "touche2020": "NanoTouche2020",
}
_ALIASES = {"fiqa": "fiqa2018", "quora": "quoraretrieval", "touche": "touche2020", "climate-fever": "climatefever"}
NANOBEIR_REPO = "zeta-alpha-ai/{name}"
NANOBEIR_MULTILINGUAL_REPO = "LiquidAI/nanobeir-multilingual-extended"

MIRACL_REPO = "mteb/MIRACLRetrievalHardNegatives"
MIRACL_LANGS = ["ar", "bn", "de", "en", "es", "fa", "fi", "fr", "hi", "id", "ja", "ko", "ru", "sw", "te", "th", "yo", "zh"]
MIRACL_DEFAULT_LANGS = ["es", "de", "ja", "ar"]  # the four the MLX build reported


def nanobeir_name(name: str) -> str:
    """'scifact', 'SciFact', 'NanoSciFact' -> 'NanoSciFact'; unknown names raise DatasetError."""
    key = re.sub(r"[^a-z0-9]", "", name.lower().removeprefix("nano"))
    key = _ALIASES.get(key, key)
    if key not in NANOBEIR_SETS:
        close = difflib.get_close_matches(key, list(NANOBEIR_SETS), n=1, cutoff=0.6)
        hint = f" Did you mean {close[0]}?" if close else ""
        raise DatasetError(f"unknown NanoBEIR set {name!r}.{hint} Known: {', '.join(NANOBEIR_SETS)}")
    return NANOBEIR_SETS[key]


def _datasets_module() -> Any:
    try:
        import datasets
    except ImportError:
        raise DatasetError(
            "hub datasets need the `datasets` library: pip install 'lfm-colbert[hub-data]' "
            "(or evaluate a local BEIR folder instead)"
        ) from None
    return datasets


def _hub_load(repo: str, config: str | None, split: str | None = None) -> Any:
    """`datasets.load_dataset`, with any failure (offline, missing config) turned into a clear error."""
    datasets = _datasets_module()
    try:
        return datasets.load_dataset(repo, config, split=split)
    except Exception as exc:  # datasets raises many types (ConnectionError, HfHubHTTPError, ValueError ...)
        where = f"{repo}" + (f" (config {config!r}" + (f", split {split!r})" if split else ")") if config else "")
        offline = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("HF_DATASETS_OFFLINE")
        hint = (
            "The Hugging Face hub is not reachable from here (offline mode is on)"
            if offline
            else "Is this machine offline, or is the hub unreachable?"
        )
        raise DatasetError(
            f"could not load {where} from the Hugging Face hub: {type(exc).__name__}: {exc}\n"
            f"{hint} Downloads are cached after the first success; offline, evaluate a local BEIR folder instead."
        ) from None


def _pick_split(obj: Any, preferred: Iterable[str]) -> Any:
    """A split out of a DatasetDict (first of `preferred` present, else the only one); a Dataset as is."""
    if hasattr(obj, "keys") and not hasattr(obj, "column_names"):
        keys = list(obj.keys())
        for name in preferred:
            if name in keys:
                return obj[name]
        if len(keys) == 1:
            return obj[keys[0]]
        raise DatasetError(f"expected one of the splits {list(preferred)}, found {keys}")
    return obj


def _field(row: dict, names: tuple[str, ...], what: str) -> Any:
    for n in names:
        if n in row and row[n] is not None:
            return row[n]
    raise DatasetError(f"{what}: row has none of the fields {names} (fields: {sorted(row)})")


def _corpus(rows: Iterable[dict]) -> dict[str, str]:
    return {
        str(_field(r, ("_id", "id", "docid", "doc_id"), "corpus")): doc_text(r.get("title"), r.get("text"))
        for r in rows
    }


def _queries(rows: Iterable[dict]) -> dict[str, str]:
    return {str(_field(r, ("_id", "id", "query_id"), "queries")): str(_field(r, ("text", "query"), "queries")) for r in rows}


def _qrels(rows: Iterable[dict]) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    for r in rows:
        q = str(_field(r, ("query-id", "query_id", "qid"), "qrels"))
        d = str(_field(r, ("corpus-id", "corpus_id", "doc_id", "docid"), "qrels"))
        qrels.setdefault(q, {})[d] = int(r.get("score", 1))  # NanoBEIR qrels carry no score: all relevant
    return qrels


# ---------------------------------------------------------------------------------------------


def load_nanobeir(name: str, lang: str | None = None, cache_dir: str | os.PathLike | None = None) -> RetrievalDataset:
    """A NanoBEIR set (50 queries); with `lang` (not 'en'), its translation from the multilingual extension."""
    nano = nanobeir_name(name)
    lang = (lang or "en").lower()
    label = nano if lang == "en" else f"{nano}-{lang}"
    cached_path = cache_root(cache_dir) / label
    cached = load_cached(cached_path)
    if cached is not None:
        return cached

    repo = NANOBEIR_REPO.format(name=nano)
    if lang == "en":
        corpus = _corpus(_pick_split(_hub_load(repo, "corpus"), ["train", "corpus"]))
        queries = _queries(_pick_split(_hub_load(repo, "queries"), ["train", "queries"]))
        qrels = _qrels(_pick_split(_hub_load(repo, "qrels"), ["train", "qrels"]))
        source = {"source": "hub", "repo": repo}
    else:
        config = f"{nano}_{lang}"
        data = _hub_load(NANOBEIR_MULTILINGUAL_REPO, config)
        if "corpus" not in data or "queries" not in data:
            raise DatasetError(f"{NANOBEIR_MULTILINGUAL_REPO} config {config!r} lacks corpus/queries splits")
        corpus, queries = _corpus(data["corpus"]), _queries(data["queries"])
        if "qrels" in data:
            qrels = _qrels(data["qrels"])
        else:  # translations keep the English ids, so the English judgments apply
            qrels = _qrels(_pick_split(_hub_load(repo, "qrels"), ["train", "qrels"]))
        source = {"source": "hub", "repo": NANOBEIR_MULTILINGUAL_REPO, "config": config}
    ds = RetrievalDataset(label, corpus, queries, qrels, lang=lang, meta=source).validate()
    ds.queries = {q: ds.queries[q] for q in ds.qrels}
    save_beir_folder(ds, cached_path)
    ds.meta["cache"] = str(cached_path)
    return ds


def miracl_pool(
    corpus: dict[str, str],
    queries: dict[str, str],
    qrels: dict[str, dict[str, int]],
    *,
    n_queries: int = 100,
    pool_size: int = 6000,
    seed: int = 0,
) -> tuple[dict[str, str], dict[str, str], dict[str, dict[str, int]]]:
    """The MLX build's reduced-pool recipe, seeded so every precision searches the identical pool:
    `n_queries` judged queries, all their judged passages (positives and the judged hard negatives),
    then random other passages of the hard-negative corpus up to `pool_size` (distractors)."""
    rng = random.Random(seed)
    judged = sorted(q for q, rels in qrels.items() if q in queries and any(g > 0 for g in rels.values()))
    if not judged:
        raise DatasetError("MIRACL: no query has a relevant passage")
    chosen = sorted(rng.sample(judged, min(n_queries, len(judged))))
    keep_qrels = {q: {d: g for d, g in qrels[q].items() if d in corpus} for q in chosen}
    pool = {d for rels in keep_qrels.values() for d in rels}
    others = sorted(d for d in corpus if d not in pool)
    pool |= set(rng.sample(others, max(0, min(pool_size - len(pool), len(others)))))
    pool_corpus = {d: corpus[d] for d in sorted(pool)}
    return pool_corpus, {q: queries[q] for q in chosen}, keep_qrels


def load_miracl(
    lang: str,
    *,
    n_queries: int = 100,
    pool_size: int = 6000,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
) -> RetrievalDataset:
    """A MIRACL dev pool for one language (see `miracl_pool`), cached as a BEIR folder."""
    lang = lang.lower()
    if lang not in MIRACL_LANGS:
        raise DatasetError(f"unknown MIRACL language {lang!r}; MIRACL has {', '.join(MIRACL_LANGS)}")
    label = f"miracl-{lang}"
    cached_path = cache_root(cache_dir) / f"{label}-q{n_queries}-p{pool_size}-s{seed}"
    cached = load_cached(cached_path)
    if cached is not None:
        return cached

    corpus = _corpus(_pick_split(_hub_load(MIRACL_REPO, f"{lang}-corpus"), ["corpus", "dev", "train"]))
    queries = _queries(_pick_split(_hub_load(MIRACL_REPO, f"{lang}-queries"), ["dev", "queries"]))
    qrels = _qrels(_pick_split(_hub_load(MIRACL_REPO, f"{lang}-qrels"), ["dev", "qrels"]))
    pool_corpus, pool_queries, pool_qrels = miracl_pool(
        corpus, queries, qrels, n_queries=n_queries, pool_size=pool_size, seed=seed
    )
    meta = {
        "source": "hub",
        "repo": MIRACL_REPO,
        "split": "dev",
        "recipe": {"n_queries": n_queries, "pool_size": pool_size, "seed": seed},
    }
    ds = RetrievalDataset(label, pool_corpus, pool_queries, pool_qrels, lang=lang, meta=meta).validate()
    save_beir_folder(ds, cached_path)
    ds.meta["cache"] = str(cached_path)
    return ds
