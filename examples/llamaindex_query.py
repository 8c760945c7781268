"""LlamaIndex: a query engine over an lfm-colbert index that returns the source passages (no LLM).

    pip install 'lfm-colbert[torch,llamaindex]'
    lfm-colbert index examples/corpus --index .demo-index
    python examples/llamaindex_query.py [INDEX_DIR]           # default: .demo-index

Give the engine an LLM (`Settings.llm = ...`) and drop response_mode="no_text" to get written answers.
"""

import sys

from llama_index.core import Settings
from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.vector_stores.types import FilterOperator, MetadataFilter, MetadataFilters

from lfm_colbert.integrations.llamaindex import LfmColbertReranker, LfmColbertRetriever

index_dir = sys.argv[1] if len(sys.argv) > 1 else ".demo-index"
Settings.llm = MockLLM()  # no LLM is called with response_mode="no_text"; this keeps LlamaIndex from asking for one

retriever = LfmColbertRetriever(
    index=index_dir, k=10,
    filters=MetadataFilters(filters=[MetadataFilter(key="lang", value=["en", "de", "fr"], operator=FilterOperator.IN)]),
)
engine = RetrieverQueryEngine.from_args(
    retriever, node_postprocessors=[LfmColbertReranker(index=index_dir, k=3)], response_mode="no_text"
)
for query in ["Wie bereitet man einen Espresso zu?", "火山爆发是怎么发生的？"]:
    print(f"query: {query}")
    for node in engine.query(query).source_nodes:
        print(f"  {node.score:7.2f}  {node.node.node_id:14s} [{node.node.metadata.get('lang')}] {node.node.get_content()[:50]}")
