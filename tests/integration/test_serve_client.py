"""`RemoteIndex` against a real server: the `Index` API over HTTP, the library's own types back, and
`lfm_colbert.errors` for every failure."""

from __future__ import annotations

import threading

import httpx
import numpy as np
import pytest
from serve_helpers import corpus_index, free_port, index_copy, uvicorn_server, wait_ready  # noqa: F401

from lfm_colbert import Index, rerank
from lfm_colbert.client import RemoteIndex
from lfm_colbert.errors import InputError, RemoteError, RemoteInputError
from lfm_colbert.explain import Explanation
from lfm_colbert.index import Document, Hit, Ranked
from lfm_colbert.server import Limits, create_app


@pytest.fixture()
def remote(index_copy, tiny_model):
    app = create_app(index_copy, tiny_model, api_key="k3y", limits=Limits(max_texts=8))
    with uvicorn_server(app) as url:
        with httpx.Client(base_url=url) as c:
            wait_ready(c)
        with RemoteIndex(url, api_key="k3y", timeout=60) as index:
            yield index


def test_search_rerank_encode(remote, corpus_index, tiny_model):
    local = Index(corpus_index, tiny_model, create=False)
    q = "¿Dónde viven los pingüinos?"
    hits = remote.search(q, k=5, filter={"lang": ["en", "es"]})
    assert all(isinstance(h, Hit) for h in hits)
    assert hits == local.search(q, k=5, filter={"lang": ["en", "es"]})
    assert remote.search([q, "Vulkan"], k=3) == local.search([q, "Vulkan"], k=3)
    for mode, alpha in (("lexical", None), ("hybrid", None), ("hybrid", 0.6)):
        assert remote.search("penguins", k=4, mode=mode, alpha=alpha) == local.search("penguins", k=4, mode=mode, alpha=alpha)
    explained = remote.explain(q, k=2)
    assert [h for h, _ in explained] == local.search(q, k=2)
    assert all(isinstance(e, Explanation) and e.score == pytest.approx(h.score, rel=1e-4) for h, e in explained)
    docs = ["Pinguine leben im Süden.", "Le café pousse en altitude.", "火山"]
    ranked = remote.rerank(q, docs, k=2)
    assert all(isinstance(r, Ranked) for r in ranked)
    assert [(r.index, r.score, r.text) for r in ranked] == [(r.index, r.score, r.text) for r in rerank(q, docs, model=tiny_model, k=2)]
    for got, want in zip(remote.encode(docs), tiny_model.encode(docs)):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(remote.encode(q, is_query=True)[0], tiny_model.encode([q], is_query=True)[0])


def test_documents(remote):
    assert len(remote) == 36
    odd = ["guides/a b.md#0", "50% off?x=1&y", "日本語/ペンギン"]
    assert remote.add(["one", "two", "three"], ids=odd, metadata=[{"lang": "en"}, None, {"tags": ["a", "b"]}]) == odd
    assert remote.get(odd[0]) == Document(odd[0], "one", {"lang": "en"}, None)
    assert [d.text if d else None for d in remote.get([odd[2], "missing", odd[1]])] == ["three", None, "two"]
    assert remote.get("missing") is None
    with pytest.raises(RemoteInputError, match="already in the index") as exc:
        remote.add(["again"], ids=[odd[0]])
    assert isinstance(exc.value, InputError) and exc.value.status == 409
    remote.upsert(["uno"], ids=[odd[0]])
    assert remote.get(odd[0]).text == "uno"
    generated = remote.add([f"note {i}" for i in range(20)])  # more than max_texts (8): several requests
    assert len(generated) == 20 and len(set(generated)) == 20 and len(remote) == 36 + 3 + 20
    everything = remote.list()
    assert [d.id for d in everything] == sorted(d.id for d in everything) and len(everything) == 59
    assert [d.id for d in remote.list(filter={"lang": "de"}, limit=2)] == ["coffee-de", "penguins-de"]
    assert [d.id for d in remote.list(limit=3, after="coffee-zh")] == [d.id for d in everything if d.id > "coffee-zh"][:3]
    assert remote.delete(odd) == 3
    with pytest.raises(RemoteInputError, match="not in the index"):
        remote.delete(["missing"])
    assert remote.delete(["missing"], missing_ok=True) == 0
    assert remote.health()["ready"] and remote.info()["index"]["documents"] == 56


def test_errors_are_library_errors(remote, index_copy):
    with pytest.raises(RemoteInputError) as exc:
        remote.search("x", k=0)
    assert exc.value.status == 422
    with pytest.raises(RemoteInputError, match="at most 8"):
        remote.search(["q"] * 9)
    with pytest.raises(RemoteError) as exc:
        RemoteIndex(remote.url).search("x")  # no key
    assert exc.value.status == 401 and not isinstance(exc.value, InputError)
    with pytest.raises(RemoteError, match="cannot reach"):
        RemoteIndex(f"http://127.0.0.1:{free_port()}").search("x")
    with pytest.raises(InputError):
        RemoteIndex("localhost:8000")
    with pytest.raises(InputError):
        remote.add("one string")
    closed = RemoteIndex(remote.url, api_key="k3y")
    closed.close()
    with pytest.raises(RemoteError, match="closed"):
        closed.search("x")


def test_busy_answers_are_retried(index_copy, tiny_model, monkeypatch):
    from lfm_colbert.server.engine import Engine

    gate = threading.Event()
    original = Engine._open
    monkeypatch.setattr(Engine, "_open", lambda self: (gate.wait(30), original(self))[1])
    with uvicorn_server(create_app(index_copy, tiny_model)) as url:
        remote = RemoteIndex(url, retries=5, max_wait=0.2)
        assert remote.health()["status"] == "loading"
        with pytest.raises(RemoteError) as exc:
            RemoteIndex(url, retries=0).search("x")
        assert exc.value.status == 503 and exc.value.code == "loading" and exc.value.retry_after == 1
        threading.Timer(0.3, gate.set).start()
        assert len(remote.search("penguins", k=3)) == 3  # answered once the model loaded
