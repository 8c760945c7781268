"""`bm25+<model>` in the evaluation harness: a ColBERT system's run and BM25's run on the same
dataset, fused per query exactly as `Index.search(mode="hybrid")` fuses them
(lfm_colbert.index.fusion: reciprocal rank fusion, or the alpha blend), so a hybrid row can stand
in the retention tables beside its model's rows. BM25 here is bm25s with the project's tokenizers,
which the index's lexical mode equals (tests/parity/test_lexical_bm25s.py)."""

from __future__ import annotations

from typing import Any

from lfm_colbert.eval.metrics import Run
from lfm_colbert.index import fusion
from lfm_colbert.index.hybrid import WINDOW

PREFIX = "bm25+"


class HybridSystem:
    """Fuses `semantic` (a ColBERTSystem) with `lexical` (a BM25System), each ranking max(depth, WINDOW)."""

    def __init__(self, semantic: Any, lexical: Any, alpha: float | None = None) -> None:
        self.semantic, self.lexical, self.alpha = semantic, lexical, alpha
        self.label = PREFIX + semantic.label
        self.model = PREFIX + semantic.model
        self.precision = semantic.precision
        self.size_bytes = getattr(semantic, "size_bytes", None)

    def describe(self) -> dict:
        fuse = "rrf" if self.alpha is None else f"blend alpha={self.alpha}"
        return {"model_id": self.model, "fusion": fuse, "rrf_k": fusion.RRF_K, "window": WINDOW,
                "semantic": self.semantic.describe(), "lexical": self.lexical.describe()}

    def run(self, ds: Any, depth: int = 100) -> Run:
        window = max(depth, WINDOW)
        sem, lex = self.semantic.run(ds, depth=window), self.lexical.run(ds, depth=window)
        out: Run = {}
        for q, scores in sem.items():
            s = sorted(scores.items(), key=lambda x: (-x[1], x[0]))
            x = sorted(((d, v) for d, v in lex.get(q, {}).items() if v > 0), key=lambda x: (-x[1], x[0]))  # no term: no hit
            fused = fusion.rrf(s, x, depth) if self.alpha is None else fusion.blend(s, x, depth, self.alpha)
            out[q] = {d: float(v) for d, v in fused}
        return out

    def close(self) -> None:
        if hasattr(self.semantic, "close"):
            self.semantic.close()
