"""Remote mode against the real service: `lfm-colbert serve` on a free loopback port, and every adapter
given its URL returns what Index.search / rerank() return here. Runs once the serve issue's
`lfm_colbert.server` and `lfm_colbert.client` are part of the build."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

pytest.importorskip("lfm_colbert.server", reason="remote mode needs `lfm-colbert serve` (lfm_colbert.server)")
pytest.importorskip("lfm_colbert.client", reason="remote mode needs lfm_colbert.client.RemoteIndex")

from lfm_colbert.index import rerank  # noqa: E402

STARTUP = 120  # seconds: torch, the model, uvicorn


@pytest.fixture(scope="module")
def served(sample_index):
    """The URL of `lfm-colbert serve` running on the sample index (loopback, a free port)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "LFM_COLBERT_API_KEY": ""}
    proc = subprocess.Popen([sys.executable, "-m", "lfm_colbert", "serve", str(sample_index.path), "--host", "127.0.0.1",
                             "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP
        while True:  # bounded: until /health answers 200 (ready: the model is loaded)
            assert proc.poll() is None, proc.stderr.read()
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            assert time.monotonic() < deadline, "lfm-colbert serve did not become ready"
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _check(ids_scores, hits):
    assert [i for i, _ in ids_scores] == [h.id for h in hits]
    assert [s for _, s in ids_scores] == pytest.approx([h.score for h in hits], rel=1e-4)


def test_every_adapter_over_http(served, sample_index, sample_queries):
    from lfm_colbert.integrations import haystack, langchain, llamaindex

    q, k = sample_queries[1], 5
    hits = sample_index.search(q, k=k)
    _check([(d.id, d.metadata["score"]) for d in langchain.LfmColbertRetriever(index=served, k=k).invoke(q)], hits)
    _check([(n.node.node_id, n.score) for n in llamaindex.LfmColbertRetriever(index=served, k=k).retrieve(q)], hits)
    _check([(d.id, d.score) for d in haystack.LfmColbertRetriever(index=served, k=k).run(q)["documents"]], hits)

    texts = [h.text for h in hits]
    want = [(hits[r.index].id, r.score) for r in rerank(q, texts, model=sample_index.model, k=3)]
    from haystack import Document as HaystackDocument
    from langchain_core.documents import Document

    got = langchain.LfmColbertReranker(index=served, k=3).compress_documents(
        [Document(id=h.id, page_content=h.text) for h in hits], q)
    assert [(d.id, d.metadata["relevance_score"]) for d in got] == [(i, pytest.approx(s, rel=1e-4)) for i, s in want]
    got = haystack.LfmColbertRanker(index=served, k=3).run(q, [HaystackDocument(id=h.id, content=h.text) for h in hits])
    assert [(d.id, d.score) for d in got["documents"]] == [(i, pytest.approx(s, rel=1e-4)) for i, s in want]


def test_mcp_over_a_served_index(served, sample_index, sample_queries):
    from mcp import Client

    from lfm_colbert.integrations.mcp import create_server

    async def session():
        async with Client(create_server(served)) as client:
            keys = await client.call_tool("list_metadata_keys", {})
            assert not keys.is_error and keys.structured_content == sample_index.metadata_keys()
            missing = await client.call_tool("fetch", {"id": "no-such-id"})
            assert missing.is_error and "no document with id" in missing.content[0].text
            result = await client.call_tool("search", {"query": sample_queries[4], "k": 4})
            assert not result.is_error
            return [(h["id"], h["score"]) for h in result.structured_content["hits"]]

    _check(asyncio.run(session()), sample_index.search(sample_queries[4], k=4))
