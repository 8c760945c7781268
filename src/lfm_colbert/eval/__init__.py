"""Evaluation: NDCG@10 / Recall@10 on BEIR folders, NanoBEIR and MIRACL pools, retention across
precisions, cross-lingual matrices, and a BM25 baseline. `lfm-colbert eval` is the front end.

    datasets.py      RetrievalDataset, BEIR folders, the conversion cache
    sources.py       dataset names (--dataset): folders, NanoBEIR, MIRACL
    hub.py           NanoBEIR, multilingual NanoBEIR, MIRACL pools (via `datasets`, cached)
    metrics.py       pytrec_eval metrics
    bm25.py          bm25s with per-language tokenizers
    retrieval.py     brute-force MaxSim (and the compressed index option)
    crosslingual.py  XQuAD-R / Tatoeba language x language matrices
    runner.py        systems x datasets -> results dict
    report.py        markdown table, results.json, retention plot
"""

from lfm_colbert.eval.datasets import RetrievalDataset, load_beir_folder
from lfm_colbert.eval.sources import load_dataset
from lfm_colbert.eval.metrics import evaluate

__all__ = ["RetrievalDataset", "evaluate", "load_beir_folder", "load_dataset"]
