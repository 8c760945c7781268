"""LangChain: index LangChain Documents (their ids kept), retrieve across languages, rerank.

    pip install 'lfm-colbert[torch,langchain]'
    python examples/langchain_retriever.py [INDEX_DIR]       # default: .demo-langchain-index

The model downloads on first use; offline, set LFM_COLBERT_MODEL to a local checkpoint directory.
"""

import json
import sys
from pathlib import Path

from langchain_core.documents import Document

from lfm_colbert.integrations.langchain import LfmColbertReranker, LfmColbertRetriever

index_dir = sys.argv[1] if len(sys.argv) > 1 else ".demo-langchain-index"
rows = [json.loads(line) for line in open(Path(__file__).parent / "corpus" / "passages.jsonl", encoding="utf-8")]
docs = [Document(id=r["id"], page_content=r["text"], metadata={"lang": r["lang"], "topic": r["topic"]}) for r in rows]

# Builds the index on the first run; later runs replace documents that have the same id.
retriever = LfmColbertRetriever.from_documents(docs, index=index_dir, k=3)

query = "¿Dónde viven los pingüinos?"
print(f"query: {query}")
for doc in retriever.invoke(query):
    print(f"  {doc.metadata['score']:7.2f}  {doc.id:14s} {doc.page_content[:60]}")

print("only Japanese and Korean:")
for doc in retriever.invoke(query, filter={"lang": ["ja", "ko"]}):
    print(f"  {doc.metadata['score']:7.2f}  {doc.id:14s} {doc.page_content[:60]}")

# A second stage: the ten best candidates reordered by a reranker. Here it scores with the index's own
# model; give it model="..." (another checkpoint) or index="http://..." (a server's /rerank) instead.
reranker = LfmColbertReranker(index=retriever.index, k=3)
print("reranked:")
for doc in reranker.compress_documents(retriever.invoke(query, k=10), query):
    print(f"  {doc.metadata['relevance_score']:7.2f}  {doc.id}")
