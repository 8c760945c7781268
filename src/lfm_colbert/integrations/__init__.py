"""lfm-colbert inside RAG frameworks and agents. Each module needs its framework, installed by an extra:

    lfm_colbert.integrations.langchain     LfmColbertRetriever, LfmColbertReranker     pip install 'lfm-colbert[langchain]'
    lfm_colbert.integrations.llamaindex    LfmColbertRetriever, LfmColbertReranker     pip install 'lfm-colbert[llamaindex]'
    lfm_colbert.integrations.haystack      LfmColbertRetriever, LfmColbertRanker       pip install 'lfm-colbert[haystack]'
    lfm_colbert.integrations.mcp           create_server (and `lfm-colbert mcp DIR`)   pip install 'lfm-colbert[mcp]'

Every retriever takes `index=`: an `Index`, an index directory, or the http(s):// URL of a running
`lfm-colbert serve` (remote mode). Importing this package imports no framework.
"""
