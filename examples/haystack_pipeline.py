"""Haystack: a Pipeline that retrieves with lfm-colbert, then reranks.

    pip install 'lfm-colbert[torch,haystack]'
    lfm-colbert index examples/corpus --index .demo-index
    python examples/haystack_pipeline.py [INDEX_DIR]          # default: .demo-index
"""

import sys

from haystack import Pipeline

from lfm_colbert.integrations.haystack import LfmColbertRanker, LfmColbertRetriever

index_dir = sys.argv[1] if len(sys.argv) > 1 else ".demo-index"

pipe = Pipeline()
pipe.add_component("retriever", LfmColbertRetriever(index=index_dir, k=10))
pipe.add_component("ranker", LfmColbertRanker(index=index_dir, k=3))
pipe.connect("retriever.documents", "ranker.documents")

query = "panneaux solaires sur le toit"
only_topics = {"field": "meta.topic", "operator": "in", "value": ["penguins", "coffee", "volcanoes"]}
for filters in (None, only_topics):
    result = pipe.run({"retriever": {"query": query, "filters": filters}, "ranker": {"query": query}})
    print(f"query: {query}" + ("  (filtered by topic)" if filters else ""))
    for doc in result["ranker"]["documents"]:
        print(f"  {doc.score:7.2f}  {doc.id}")
