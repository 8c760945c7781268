"""Run retrieval systems (ColBERT checkpoints at several precisions, or BM25) over datasets and
collect the metrics into one results dict: the input of `report.py`.

    results = {"schema": ..., "settings": {...}, "datasets": {name: stats},
               "runs": [{"label", "model", "precision", "size_bytes", "metrics": {dataset: {...}},
                         "mean": {...}, "retention": {dataset|"mean": {...}} | None}],
               "crosslingual": {...} | absent}
"""

from __future__ import annotations

import gc
import logging
import os
import platform
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from lfm_colbert.errors import InputError
from lfm_colbert.eval.bm25 import BM25, tokenizer_kind
from lfm_colbert.eval.datasets import RetrievalDataset
from lfm_colbert.eval.metrics import Run, evaluate, top_k_run
from lfm_colbert.eval.retrieval import PackedDocs, encode_texts, index_search, maxsim_scores

log = logging.getLogger(__name__)

SCHEMA = "lfm-colbert-eval/1"
PRECISIONS = ("bf16", "8bit", "4bit", "mxfp4")
RUN_DEPTH = 100  # documents kept per query in a run (metrics use the top k of them)


# ---------------------------------------------------------------------------------------------
# Systems: something that turns a dataset into a run


class BM25System:
    """The lexical baseline; indexes each corpus once (per language) and reuses it across pairs."""

    model = "bm25"
    precision: str | None = None

    def __init__(self) -> None:
        self.label = "bm25"
        self._indexes: dict[str, BM25] = {}

    def describe(self) -> dict:
        import bm25s

        return {"model_id": "bm25", "library": f"bm25s {bm25s.__version__}", "params": BM25().params}

    def run(self, ds: RetrievalDataset, depth: int = RUN_DEPTH) -> Run:
        key = ds.meta.get("corpus_key") or f"{ds.name}:{id(ds.corpus)}"
        if key not in self._indexes:
            self._indexes = {key: BM25(lang=ds.corpus_lang).index(list(ds.corpus), list(ds.corpus.values()))}
        queries = ds.judged_queries()
        return self._indexes[key].run(list(queries), list(queries.values()), k=depth, lang=ds.lang)


class ColBERTSystem:
    """A loaded encoder (anything with ColBERT's `encode`), searched by brute-force MaxSim or the index."""

    def __init__(self, encoder: Any, label: str, model: str, precision: str | None = None, *,
                 search: str = "brute", batch_size: int = 32, show_progress: bool = True,
                 size_bytes: int | None = None):
        if search not in ("brute", "index"):
            raise InputError(f"unknown search {search!r}: use brute or index")
        self.encoder, self.label, self.model, self.precision = encoder, label, model, precision
        self.search, self.batch_size, self.show_progress = search, batch_size, show_progress
        self.size_bytes = size_bytes
        self._memo: dict[tuple[str, str], Any] = {}  # encodings reused across cross-lingual pairs

    def describe(self) -> dict:
        fn = getattr(self.encoder, "describe", None)
        return fn() if callable(fn) else {"model_id": self.model}

    def _docs(self, ds: RetrievalDataset) -> tuple[list[np.ndarray], PackedDocs]:
        key = ("corpus", ds.meta.get("corpus_key") or f"{ds.name}:{id(ds.corpus)}")
        if key not in self._memo:
            if not ds.meta.get("corpus_key"):  # a one-off corpus: keep at most one in memory
                self._memo = {k: v for k, v in self._memo.items() if k[0] != "corpus"}
            # ColBERT.encode length-sorts its batches itself (as PyLate does) and returns input order.
            vecs = encode_texts(self.encoder, list(ds.corpus.values()), batch_size=self.batch_size,
                                show_progress=self.show_progress)
            self._memo[key] = (vecs, PackedDocs(vecs))
        return self._memo[key]

    def _queries(self, ds: RetrievalDataset, texts: list[str]) -> list[np.ndarray]:
        key = ("queries", ds.meta.get("queries_key"))
        if key[1] and key in self._memo:
            return self._memo[key]
        vecs = encode_texts(self.encoder, texts, is_query=True, batch_size=self.batch_size)
        if key[1]:
            self._memo[key] = vecs
        return vecs

    def run(self, ds: RetrievalDataset, depth: int = RUN_DEPTH) -> Run:
        queries = ds.judged_queries()
        qids, doc_ids = list(queries), list(ds.corpus)
        if ds.meta.get("queries_key"):  # encode all of a language's questions once, then pick
            allq = self._queries(ds, list(ds.queries.values()))
            pos = {q: i for i, q in enumerate(ds.queries)}
            qvecs = [allq[pos[q]] for q in qids]
        else:
            qvecs = self._queries(ds, list(queries.values()))
        doc_vecs, packed = self._docs(ds)
        if self.search == "index":
            hits = index_search(self.encoder, doc_ids, doc_vecs, qvecs, k=depth)
            return {q: {d: float(s) for d, s in h} for q, h in zip(qids, hits)}
        scores = maxsim_scores(qvecs, packed, show_progress=self.show_progress and len(qids) > 256)
        return top_k_run(qids, doc_ids, scores, k=depth)

    def close(self) -> None:
        self._memo.clear()
        self.encoder = None
        gc.collect()


# ---------------------------------------------------------------------------------------------
# Loading checkpoints at a precision


def _slug(model: str) -> str:
    return "".join(c if c.isalnum() or c in "-._" else "--" for c in model.strip("/")).strip("-.")


def dir_size(path: str | os.PathLike) -> int | None:
    """Bytes of the weight files under a local checkpoint folder (None for a hub id)."""
    p = Path(path)
    if not p.is_dir():
        return None
    files = [f for f in p.rglob("*") if f.is_file() and f.suffix in {".safetensors", ".bin", ".npz", ".gguf"}]
    return sum(f.stat().st_size for f in files) or None


def converted_path(model: str, precision: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """Cache folder of a conversion, keyed by the source's weights so new weights at the same path reconvert."""
    from lfm_colbert.checkpoint import load_checkpoint

    fingerprint = load_checkpoint(model).fingerprint()
    base = Path(cache_dir or os.environ.get("LFM_COLBERT_CACHE") or Path.home() / ".cache" / "lfm-colbert").expanduser()
    return base / "converted" / f"{_slug(model)}-{fingerprint}-{precision}"


def prepare_precision(model: str, precision: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """Convert `model` to `precision` once (cached); returns the converted folder."""
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    try:
        from lfm_colbert.convert import convert
    except ImportError as exc:
        raise InputError(
            f"--precision needs lfm_colbert.convert, which this build lacks ({exc}); "
            "leave --precision out to evaluate the checkpoint as it is"
        ) from None
    out = converted_path(model, precision, cache_dir)
    if out.is_dir() and any(out.iterdir()):
        return out
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    convert(model, tmp, precision=precision, force=True)
    os.replace(tmp, out)  # only a finished conversion lands in the cache
    return out


def load_system(
    model: str,
    precision: str | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    backend: str = "auto",
    device: str | None = None,
    query_expansion: bool | None = None,
    search: str = "brute",
    batch_size: int = 32,
    show_progress: bool = True,
) -> BM25System | ColBERTSystem:
    """`bm25`, a ColBERT checkpoint (hub id or folder), converted first when `precision` is set, or
    `bm25+<checkpoint>` (that checkpoint fused with BM25, as hybrid search does)."""
    if model.lower() == "bm25":
        return BM25System()
    if model.lower().startswith("bm25+"):  # hybrid: the model's run fused with BM25's (lfm_colbert.eval.hybrid)
        from lfm_colbert.eval.hybrid import HybridSystem

        return HybridSystem(load_system(model[5:], precision, cache_dir=cache_dir, backend=backend, device=device,
                                        query_expansion=query_expansion, search=search, batch_size=batch_size,
                                        show_progress=show_progress), BM25System())
    from lfm_colbert import ColBERT

    path: str | os.PathLike = model
    if precision:
        path = prepare_precision(model, precision, cache_dir)
    encoder = ColBERT(str(path), backend=backend, device=device, do_query_expansion=query_expansion)
    label = (Path(model).name if Path(model).exists() else model) + (f" {precision}" if precision else "")
    return ColBERTSystem(encoder, label, model, precision, search=search, batch_size=batch_size,
                         show_progress=show_progress, size_bytes=dir_size(path))


# ---------------------------------------------------------------------------------------------
# Evaluation


@dataclass
class RunResult:
    label: str
    model: str
    precision: str | None
    size_bytes: int | None
    describe: dict
    metrics: dict[str, dict] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def mean(self, names: Iterable[str]) -> dict:
        vals = list(self.metrics.values())
        return {n: float(np.mean([v[n] for v in vals])) for n in names} if vals else {}


def evaluate_system(system: BM25System | ColBERTSystem, datasets: list[RetrievalDataset], k: int = 10,
                    extra: tuple[str, ...] = ()) -> RunResult:
    """Every dataset through one system: metrics and wall time per dataset."""
    res = RunResult(system.label, system.model, system.precision, getattr(system, "size_bytes", None), system.describe())
    for ds in datasets:
        t0 = time.perf_counter()
        run = system.run(ds, depth=max(RUN_DEPTH, k))
        scores = evaluate(ds.qrels, run, k=k, extra=extra)
        res.seconds[ds.name] = round(time.perf_counter() - t0, 3)
        res.metrics[ds.name] = scores
        log.info("%s on %s: %s", system.label, ds.name, {m: round(v, 4) for m, v in scores.items() if m != "n_queries"})
    return res


def retention(runs: list[RunResult], names: list[str]) -> dict[int, dict | None]:
    """metric / baseline metric, per dataset and for the mean. The baseline of a model is its bf16
    run, else its first run; BM25 has none."""
    by_model: dict[str, list[int]] = {}
    for i, r in enumerate(runs):
        by_model.setdefault(r.model, []).append(i)
    out: dict[int, dict | None] = {}
    for model, idx in by_model.items():
        if model == "bm25" or len(idx) < 2:
            out.update({i: None for i in idx})
            continue
        base = next((i for i in idx if runs[i].precision == "bf16"), idx[0])
        b = runs[base]
        for i in idx:
            r = runs[i]
            ret = {
                ds: {n: (r.metrics[ds][n] / b.metrics[ds][n] if b.metrics[ds][n] else None) for n in names}
                for ds in r.metrics
            }
            bm, rm = b.mean(names), r.mean(names)
            ret["mean"] = {n: (rm[n] / bm[n] if bm[n] else None) for n in names}
            ret["baseline"] = b.label
            out[i] = ret
    return out


def run_evaluation(
    models: list[str],
    datasets: list[RetrievalDataset],
    *,
    precisions: list[str | None] | None = None,
    k: int = 10,
    crosslingual: tuple[str, list[str], list[RetrievalDataset]] | None = None,
    loader: Callable[[str, str | None], BM25System | ColBERTSystem] = load_system,
    settings: dict | None = None,
) -> dict:
    """Evaluate every model (at every precision; BM25 once) on every dataset; returns the results dict."""
    names = [f"ndcg@{k}", f"recall@{k}"]
    precisions = precisions or [None]
    runs: list[RunResult] = []
    xl_cells: list[dict] = []
    for model in models:
        for precision in ([None] if model.lower() == "bm25" else precisions):
            system = loader(model, precision)
            if datasets:
                runs.append(evaluate_system(system, datasets, k=k))
            if crosslingual:
                kind, langs, pairs = crosslingual
                cells = {}
                for ds in pairs:
                    m = evaluate(ds.qrels, system.run(ds, depth=max(RUN_DEPTH, k)), k=k, extra=("accuracy@1",))
                    cells[f"{ds.lang}->{ds.doc_lang}"] = m
                xl_cells.append({"label": system.label, "model": model, "precision": precision, "cells": cells})
            if hasattr(system, "close"):
                system.close()
    ret = retention(runs, names)
    results: dict = {
        "schema": SCHEMA,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "settings": dict(settings or {}, k=k, metrics=names, machine=platform.platform()),
        "datasets": {ds.name: dict(ds.stats(), bm25_tokenizer=tokenizer_kind(ds.corpus_lang), **{
            key: ds.meta[key] for key in ("source", "repo", "path", "recipe", "subset", "cache") if key in ds.meta})
            for ds in datasets},
        "runs": [
            {
                "label": r.label, "model": r.model, "precision": r.precision, "size_bytes": r.size_bytes,
                "describe": r.describe, "metrics": r.metrics, "seconds": r.seconds,
                "mean": r.mean(names), "retention": ret.get(i),
            }
            for i, r in enumerate(runs)
        ],
    }
    if crosslingual:
        results["crosslingual"] = {"set": crosslingual[0], "langs": crosslingual[1], "systems": xl_cells}
    return results
