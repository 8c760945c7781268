"""LangChain: a retriever over an lfm-colbert index, and a reranker for `ContextualCompressionRetriever`.

    >>> from lfm_colbert.integrations.langchain import LfmColbertRetriever, LfmColbertReranker
    >>> retriever = LfmColbertRetriever(index="my-index", k=5, filter={"lang": ["en", "es"]})
    >>> retriever.invoke("¿Dónde viven los pingüinos?")          # [Document(id=..., metadata={..., "score": ...})]
    >>> retriever.upsert([Document(id="p1", page_content="Penguins live in the south.")])   # ids kept
    >>> LfmColbertReranker(model=model, k=3).compress_documents(docs, "query")   # best first

`LfmColbertRetriever` is a `DocumentIndex` (LangChain's retriever that also stores documents): `upsert`,
`get`, `delete` by id, so it can be the destination of `langchain_core.indexing.index()` too.
`index=` is an `Index`, an index directory or the URL of `lfm-colbert serve`. Needs
`pip install 'lfm-colbert[langchain]'`.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from typing import Any

from lfm_colbert.integrations._common import IndexHandle, Scorer, _check_k, open_index

try:
    from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun, Callbacks
    from langchain_core.documents import BaseDocumentCompressor, Document
    from langchain_core.indexing.base import DeleteResponse, DocumentIndex, UpsertResponse
    from pydantic import ConfigDict, Field, PrivateAttr
except ModuleNotFoundError as _exc:
    from lfm_colbert.integrations._common import missing_extra

    raise missing_extra(_exc, "langchain", "lfm_colbert.integrations.langchain") from None

__all__ = ["LfmColbertRetriever", "LfmColbertReranker"]


def _document(hit: Any, score_key: str | None) -> Document:
    metadata = dict(hit.metadata or {})
    if score_key:
        metadata[score_key] = float(hit.score)
    return Document(id=hit.id, page_content=hit.text or "", metadata=metadata)


class LfmColbertRetriever(DocumentIndex):
    """Late-interaction (MaxSim) search over an lfm-colbert index, as a LangChain retriever.

    index:     an `Index`, an index directory, or an http(s):// URL of `lfm-colbert serve`.
    k:         documents per query (also per call: `retriever.invoke(q, k=3)`).
    filter:    metadata filter, {"key": value or [any, of, these]}, keys ANDed (also per call).
    model:     for an index directory: the model to search it with (default: the one that built it).
    api_key:   for a URL (default: $LFM_COLBERT_API_KEY).
    score_key: the metadata key that receives each hit's MaxSim score (None: no score).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    index: Any
    k: int = 10
    filter: dict[str, Any] | None = None
    model: Any = None
    api_key: str | None = Field(default=None, repr=False)
    score_key: str | None = "score"
    _handle: IndexHandle = PrivateAttr()

    def __init__(self, **data: Any) -> None:
        # Checked before pydantic sees them, so a bad index or k raises lfm-colbert's own error.
        _check_k(data.get("k", 10))
        handle = open_index(data.get("index"), model=data.get("model"), api_key=data.get("api_key"))
        super().__init__(**data)
        self._handle = handle

    @classmethod
    def from_documents(cls, documents: Sequence[Document], index: Any, model: Any = None, **kwargs: Any) -> "LfmColbertRetriever":
        """Build (or extend) the index at `index` from LangChain documents, ids kept, and return a retriever
        over it. A new directory is created with `model` (default: $LFM_COLBERT_MODEL, else LFM2.5)."""
        from lfm_colbert.integrations._common import is_url

        if isinstance(index, (str, os.PathLike)) and not is_url(index):
            from lfm_colbert.index import Index

            index = Index(index, model)  # creates the directory, or opens it (checking the model)
            model = None
        retriever = cls(index=index, model=model, **kwargs)
        retriever.add_documents(documents)
        return retriever

    # -- retrieval -----------------------------------------------------------------------------
    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, k: int | None = None,
        filter: dict[str, Any] | None = None,
    ) -> list[Document]:
        hits = self._handle.call("search", query, self.k if k is None else k, self.filter if filter is None else filter)
        return [_document(h, self.score_key) for h in hits]

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, k: int | None = None,
        filter: dict[str, Any] | None = None,
    ) -> list[Document]:
        hits = await self._handle.acall("search", query, self.k if k is None else k, self.filter if filter is None else filter)
        return [_document(h, self.score_key) for h in hits]

    # -- storing documents ---------------------------------------------------------------------
    def upsert(self, items: Sequence[Document], /, **kwargs: Any) -> UpsertResponse:
        """Add documents, replacing any with the same id; a document without an id gets a new one.
        All or nothing: an error (an empty text, metadata that is not JSON) adds none of them."""
        docs = list(items)
        ids = [d.id or uuid.uuid4().hex for d in docs]
        if docs:
            self._handle.call("upsert", [d.page_content for d in docs], ids, [d.metadata for d in docs])
        return {"succeeded": ids, "failed": []}

    def add_documents(self, documents: Sequence[Document], **kwargs: Any) -> list[str]:
        """`upsert`, returning the ids (each document's own `id`, or a new one)."""
        return list(self.upsert(documents)["succeeded"])

    def get(self, ids: Sequence[str], /, **kwargs: Any) -> list[Document]:
        """The stored documents with these ids (unknown ids are left out), without scores."""
        found = self._handle.call("get", list(dict.fromkeys(ids)))
        return [Document(id=d.id, page_content=d.text or "", metadata=dict(d.metadata or {})) for d in found if d]

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> DeleteResponse:
        """Delete documents by id; ids not in the index are skipped, not an error."""
        if ids is None:
            from lfm_colbert.errors import InputError

            raise InputError("delete() needs the ids of the documents to delete")
        deleted = self._handle.call("delete", list(ids), True) if ids else []
        return {"succeeded": deleted, "failed": [], "num_deleted": len(deleted), "num_failed": 0}


class LfmColbertReranker(BaseDocumentCompressor):
    """Reorder documents by MaxSim against the query, best first, as `lfm_colbert.rerank` does; use it in
    `ContextualCompressionRetriever(base_compressor=LfmColbertReranker(...), base_retriever=...)`.

    model:     a loaded `ColBERT`, a hub id or checkpoint directory (default: $LFM_COLBERT_MODEL, else LFM2.5);
    index:     or an `Index` / index directory (use its model) or the URL of `lfm-colbert serve` (its /rerank).
    k:         keep the best k (default: all, reordered).
    score_key: the metadata key that receives each document's score.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    model: Any = None
    index: Any = None
    api_key: str | None = Field(default=None, repr=False)
    k: int | None = None
    score_key: str = "relevance_score"
    _scorer: Scorer = PrivateAttr()

    def __init__(self, **data: Any) -> None:
        _check_k(data.get("k"), optional=True)
        scorer = Scorer(index=data.get("index"), model=data.get("model"), api_key=data.get("api_key"))
        super().__init__(**data)
        self._scorer = scorer

    def _ranked(self, documents: Sequence[Document], ranked: list[Any]) -> list[Document]:
        # New Document objects: the caller's documents keep their metadata as they were.
        return [
            Document(id=documents[r.index].id, page_content=documents[r.index].page_content,
                     metadata={**documents[r.index].metadata, self.score_key: float(r.score)})
            for r in ranked
        ]

    def compress_documents(self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None) -> Sequence[Document]:
        docs = list(documents)
        return self._ranked(docs, self._scorer.rerank(query, [d.page_content for d in docs], self.k))

    async def acompress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        docs = list(documents)
        return self._ranked(docs, await self._scorer.arerank(query, [d.page_content for d in docs], self.k))
