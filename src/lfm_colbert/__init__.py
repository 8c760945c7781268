"""lfm-colbert: local multilingual late-interaction search with LFM2 / LFM2.5 ColBERT.

    >>> from lfm_colbert import ColBERT
    >>> model = ColBERT()                                  # LiquidAI/LFM2.5-ColBERT-350M
    >>> q = model.encode(["¿Dónde vive el pingüino?"], is_query=True)
    >>> d = model.encode(["Penguins live in the southern hemisphere."])
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["ColBERT", "Index", "maxsim", "rerank", "__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from lfm_colbert.encoder import ColBERT
    from lfm_colbert.index import Index, rerank
    from lfm_colbert.scoring import maxsim


def __getattr__(name: str) -> Any:
    # Lazy imports: `import lfm_colbert` stays cheap and needs neither torch nor mlx.
    if name == "ColBERT":
        from lfm_colbert.encoder import ColBERT

        return ColBERT
    if name == "Index":
        from lfm_colbert.index import Index

        return Index
    if name == "rerank":
        from lfm_colbert.index import rerank

        return rerank
    if name == "maxsim":
        from lfm_colbert.scoring import maxsim

        return maxsim
    raise AttributeError(f"module 'lfm_colbert' has no attribute {name!r}")
