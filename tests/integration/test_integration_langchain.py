"""LangChain: LangChain's own standard test suites against our retriever, and a compression chain.

Suites from `langchain-tests`: RetrieversIntegrationTests (retrieval, k in the constructor and per call,
sync and async) and DocumentIndexerTestSuite / AsyncDocumentIndexTestSuite (upsert with ids kept, get,
delete). langchain-tests has no unit-test suite for retrievers.
"""

from __future__ import annotations

import pytest
import pytest_asyncio
from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_core.documents import Document
from langchain_tests.integration_tests import RetrieversIntegrationTests
from langchain_tests.integration_tests.indexer import AsyncDocumentIndexTestSuite, DocumentIndexerTestSuite

from lfm_colbert.errors import IndexFormatError, InputError
from lfm_colbert.index import Index, rerank
from lfm_colbert.integrations.langchain import LfmColbertReranker, LfmColbertRetriever

# The standard suites mix sync and async tests; pytest-asyncio (strict mode) runs the async ones.
pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.filterwarnings("ignore:The test <Function .*> is marked with '@pytest.mark.asyncio':pytest.PytestWarning"),
]


class TestStandardRetriever(RetrieversIntegrationTests):
    @pytest.fixture(autouse=True)
    def _sample(self, sample_index):
        self.sample = sample_index

    @property
    def retriever_constructor(self):
        return LfmColbertRetriever

    @property
    def retriever_constructor_params(self) -> dict:
        return {"index": self.sample}

    @property
    def retriever_query_example(self) -> str:
        return "¿Dónde viven los pingüinos?"


class TestStandardDocumentIndex(DocumentIndexerTestSuite):
    @pytest.fixture
    def index(self, tmp_path, tiny_model):
        return LfmColbertRetriever(index=Index(tmp_path / "idx", tiny_model))


class TestStandardAsyncDocumentIndex(AsyncDocumentIndexTestSuite):
    @pytest_asyncio.fixture
    async def index(self, tmp_path, tiny_model):
        return LfmColbertRetriever(index=Index(tmp_path / "idx", tiny_model))


def _same_as_search(docs: list[Document], hits, score_key: str = "score") -> None:
    assert [d.id for d in docs] == [h.id for h in hits]
    assert [d.page_content for d in docs] == [h.text for h in hits]
    for d, h in zip(docs, hits):
        assert d.metadata == {**h.metadata, score_key: pytest.approx(h.score, rel=1e-5)}


def test_retriever_returns_what_index_search_does(sample_index, sample_queries):
    retriever = LfmColbertRetriever(index=sample_index.path, k=4)  # a path: opened here, with the recorded model
    for q in sample_queries[:3]:
        _same_as_search(retriever.invoke(q), sample_index.search(q, k=4))
    f = {"lang": ["de", "ja"]}
    docs = retriever.invoke(sample_queries[0], k=2, filter=f)
    _same_as_search(docs, sample_index.search(sample_queries[0], k=2, filter=f))
    assert {d.metadata["lang"] for d in docs} <= {"de", "ja"}
    # batch() calls from a thread pool; the index answers on its own thread.
    batched = retriever.batch(sample_queries[:4])
    for q, docs in zip(sample_queries[:4], batched):
        _same_as_search(docs, sample_index.search(q, k=4))


async def test_async_retrieval_matches(sample_index, sample_queries):
    retriever = LfmColbertRetriever(index=sample_index, k=3, filter={"topic": "coffee"})
    docs = await retriever.ainvoke(sample_queries[1])
    _same_as_search(docs, sample_index.search(sample_queries[1], k=3, filter={"topic": "coffee"}))


def test_documents_added_keep_their_ids(tmp_path, tiny_model):
    docs = [Document(id="pen", page_content="Emperor penguins keep their eggs on their feet.", metadata={"lang": "en"}),
            Document(id="vol", page_content="El volcán entró en erupción.", metadata={"lang": "es"}),
            Document(page_content="富士山は活火山です。", metadata={"lang": "ja"})]
    retriever = LfmColbertRetriever.from_documents(docs, index=tmp_path / "new-index", model=tiny_model, k=3)
    index = Index(tmp_path / "new-index")
    assert index.get("pen").text == docs[0].page_content and index.get("vol").metadata == {"lang": "es"}
    new_id = next(d.id for d in index.list() if d.id not in ("pen", "vol"))
    assert [d.id for d in retriever.invoke("penguins")] == [h.id for h in index.search("penguins", k=3)]
    assert new_id in {d.id for d in retriever.invoke("volcano")}
    # An error adds nothing: one empty text refuses the whole call.
    with pytest.raises(InputError):
        retriever.add_documents([Document(id="ok", page_content="fine"), Document(id="bad", page_content=" ")])
    assert retriever.get(["ok", "bad"]) == []


def test_reranker_in_a_compression_chain_orders_as_rerank_does(sample_index, sample_queries, causal_model):
    base = LfmColbertRetriever(index=sample_index, k=8)
    chain = ContextualCompressionRetriever(base_compressor=LfmColbertReranker(model=causal_model, k=3), base_retriever=base)
    reordered = 0
    for q in sample_queries[:4]:
        candidates = sample_index.search(q, k=8)
        want = rerank(q, [h.text for h in candidates], model=causal_model, k=3)
        got = chain.invoke(q)
        assert [d.id for d in got] == [candidates[r.index].id for r in want]
        assert [d.metadata["relevance_score"] for d in got] == pytest.approx([r.score for r in want], rel=1e-5)
        reordered += [d.id for d in got] != [h.id for h in candidates[:3]]
    assert reordered, "the reranking model never changed the retriever's order: this test would prove nothing"


async def test_reranker_async_and_untouched_inputs(causal_model):
    docs = [Document(page_content=t, metadata={"n": i}) for i, t in enumerate(["Espresso needs finely ground coffee.",
                                                                              "Penguins cannot fly.", "Lava reaches the sea."])]
    got = await LfmColbertReranker(model=causal_model).acompress_documents(docs, "coffee")
    want = rerank("coffee", [d.page_content for d in docs], model=causal_model)
    assert [d.metadata["n"] for d in got] == [r.index for r in want]
    assert all("relevance_score" not in d.metadata for d in docs)  # the caller's documents are not modified


def test_adapters_on_one_directory_share_one_model(sample_index):
    from lfm_colbert.integrations import haystack, llamaindex

    path = str(sample_index.path)
    retriever, reranker = LfmColbertRetriever(index=path), LfmColbertReranker(index=path + "/")
    assert retriever._handle is reranker._scorer.handle is llamaindex.LfmColbertRetriever(index=path).handle
    ranker = haystack.LfmColbertRanker(index=path)
    ranker.warm_up()
    assert ranker._scorer.handle is retriever._handle
    assert retriever._handle.call("model") is retriever._handle.call("model")


def test_bad_arguments_are_clear_errors(tmp_path, sample_index):
    with pytest.raises(IndexFormatError, match="no lfm-colbert index"):
        LfmColbertRetriever(index=tmp_path / "nothing-here")
    with pytest.raises(ValueError, match="positive integer"):
        LfmColbertRetriever(index=sample_index, k=0)
    with pytest.raises(InputError, match="index= takes"):
        LfmColbertRetriever(index=42)
    with pytest.raises(InputError, match="bad filter key"):
        LfmColbertRetriever(index=sample_index).invoke("x", filter={"bad'key": 1})
    with pytest.raises(InputError, match="not both"):
        LfmColbertReranker(model="m", index=sample_index)


def test_remote_url_goes_through_the_client(fake_remote, sample_index, sample_queries):
    retriever = LfmColbertRetriever(index="http://127.0.0.1:9/", k=3, api_key="secret")
    (client,) = fake_remote
    assert client.url == "http://127.0.0.1:9/" and client.api_key == "secret"
    _same_as_search(retriever.invoke(sample_queries[2]), sample_index.search(sample_queries[2], k=3))
    assert client.calls[-1][0] == "search"
    reranker = LfmColbertReranker(index="https://127.0.0.1:9/", k=2)
    got = reranker.compress_documents([Document(page_content="a b"), Document(page_content="penguins")], "penguins")
    assert fake_remote[1].calls == [("rerank", "penguins", 2, 2)] and len(got) == 2
