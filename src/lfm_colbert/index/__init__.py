"""Embedded on-disk index: exact and compressed (PLAID-style) MaxSim search, incremental updates.

    >>> from lfm_colbert.index import Index, rerank
"""

from __future__ import annotations

from lfm_colbert.index.index import Document, Hit, Index
from lfm_colbert.index.rerank import Ranked, rerank

__all__ = ["Document", "Hit", "Index", "Ranked", "rerank"]
