"""The HTTP API through FastAPI's TestClient: every endpoint, and every error status, as JSON."""

from __future__ import annotations

import base64
import json
import threading
import time

import numpy as np
import pytest
from serve_helpers import BlockingModel, corpus_index, index_copy, sample_corpus, serving, wait_ready  # noqa: F401

from lfm_colbert import Index, rerank
from lfm_colbert.server import Limits, create_app


@pytest.fixture()
def client(index_copy, tiny_model):
    with serving(index_copy, tiny_model) as c:
        yield c


def _ids(hits):
    return [h["id"] for h in hits]


# -- search -------------------------------------------------------------------------------------
def test_search_agrees_with_the_library(client, corpus_index, tiny_model):
    index = Index(corpus_index, tiny_model, create=False)
    queries = ["¿Dónde viven los pingüinos?", "ペンギンはどうやって泳ぐの？", "volcanic eruptions in Iceland"]
    for q in queries:
        r = client.post("/search", json={"query": q, "k": 5})
        assert r.status_code == 200
        want = index.search(q, k=5)
        got = r.json()["hits"]
        assert _ids(got) == [h.id for h in want]
        assert [h["score"] for h in got] == pytest.approx([h.score for h in want], rel=1e-6)
        assert got[0]["text"] == want[0].text and got[0]["metadata"] == want[0].metadata
        assert got[0]["explanation"] is None
    batch = client.post("/search", json={"queries": queries, "k": 3, "filter": {"lang": ["de", "ja"]}}).json()["hits"]
    want = index.search(queries, k=3, filter={"lang": ["de", "ja"]})
    assert [_ids(h) for h in batch] == [[h.id for h in hits] for hits in want]
    assert all(h["metadata"]["lang"] in ("de", "ja") for hits in batch for h in hits)


def test_search_modes_agree_with_the_library(client, corpus_index, tiny_model):
    """Keyword and hybrid search over HTTP are Index.search's, filters included."""
    index = Index(corpus_index, tiny_model, create=False)
    for q, options in [("penguins swim", {"mode": "lexical"}), ("Pinguine Flossen", {"mode": "hybrid"}),
                       ("coffee espresso", {"mode": "hybrid", "alpha": 0.7}),
                       ("volcano", {"mode": "hybrid", "filter": {"lang": ["en", "de"]}})]:
        r = client.post("/search", json={"query": q, "k": 5, **options})
        assert r.status_code == 200, r.text
        want = index.search(q, k=5, **options)
        assert [(h["id"], h["score"]) for h in r.json()["hits"]] == [(h.id, pytest.approx(h.score, rel=1e-6)) for h in want]
    lexical = client.post("/search", json={"query": "penguins", "k": 3, "mode": "lexical", "explain": True}).json()["hits"]
    assert lexical and all(h["explanation"] is None for h in lexical)  # BM25 hits have no token matches
    hybrid = client.post("/search", json={"query": "penguins", "k": 3, "mode": "hybrid", "explain": True}).json()["hits"]
    assert all(h["explanation"] is not None for h in hybrid)


def test_search_explains_each_hit(client, tiny_model):
    r = client.post("/search", json={"query": "Emperor penguins in winter", "k": 3, "explain": True})
    assert r.status_code == 200
    for hit in r.json()["hits"]:
        e = hit["explanation"]
        assert len(e["matches"]) == tiny_model.settings.query_length
        # The matches split the score (the stored vectors are float16; the scan rescored them in float32).
        assert sum(m["score"] for m in e["matches"]) == pytest.approx(hit["score"], rel=1e-4)
        assert e["score"] == pytest.approx(hit["score"], rel=1e-4)
        for m in e["matches"]:
            if m["doc_span"] is not None:
                a, b = m["doc_span"]
                assert hit["text"][a:b] == m["doc_text"]
        assert {"text", "special", "expansion"} == {m["kind"] for m in e["matches"]}


def test_rerank_agrees_with_the_library(client, tiny_model):
    docs = [r["text"] for r in sample_corpus()[:9]]
    query = "where do penguins raise their chicks?"
    want = rerank(query, docs, model=tiny_model)
    got = client.post("/rerank", json={"query": query, "documents": docs}).json()["results"]
    assert [g["index"] for g in got] == [w.index for w in want]
    assert [g["score"] for g in got] == pytest.approx([w.score for w in want], rel=1e-6)
    top2 = client.post("/rerank", json={"query": query, "documents": docs, "k": 2, "explain": True}).json()["results"]
    assert [g["index"] for g in top2] == [w.index for w in want[:2]]
    assert top2[0]["explanation"]["score"] == pytest.approx(want[0].score, rel=1e-5)
    assert client.post("/rerank", json={"query": query, "documents": []}).json() == {"results": []}


def test_encode_returns_the_models_vectors(client, tiny_model):
    texts = ["¿Dónde viven los pingüinos?", "火山"]
    for is_query in (True, False):
        want = tiny_model.encode(texts, is_query=is_query)
        r = client.post("/encode", json={"texts": texts, "is_query": is_query}).json()
        assert r["dim"] == 128 and r["shapes"] == [list(w.shape) for w in want]
        for v, w in zip(r["vectors"], want):
            np.testing.assert_array_equal(np.asarray(v, dtype=np.float32), w)
        b = client.post("/encode", json={"texts": texts, "is_query": is_query, "format": "base64"}).json()
        for v, shape, w in zip(b["vectors"], b["shapes"], want):
            np.testing.assert_array_equal(np.frombuffer(base64.b64decode(v), "<f4").reshape(shape), w)


# -- documents ----------------------------------------------------------------------------------
def test_add_get_upsert_delete(client, index_copy, tiny_model):
    docs = [{"id": "guides/solar.md#0", "text": "Solar panels on the roof.", "metadata": {"lang": "en", "n": 1}},
            {"id": "q?x=1&y", "text": "Paneles solares en el tejado."},
            {"text": "Sonnenkollektoren auf dem Dach."}]
    r = client.post("/documents", json={"documents": docs})
    assert r.status_code == 200, r.text
    ids = r.json()["ids"]
    assert ids[:2] == ["guides/solar.md#0", "q?x=1&y"] and len(ids[2]) == 32 and r.json()["truncated"] == []
    from urllib.parse import quote

    got = client.get("/documents/" + quote(ids[0], safe="")).json()
    assert got == {"id": ids[0], "text": docs[0]["text"], "metadata": {"lang": "en", "n": 1}, "parent": None}
    assert client.get("/documents/" + quote(ids[1], safe="")).json()["text"] == docs[1]["text"]
    many = client.get("/documents", params={"id": [ids[2], "nope"]}).json()["documents"]
    assert many[0]["text"] == docs[2]["text"] and many[1] is None

    # The API encodes documents exactly as Index.add does.
    ref = Index(index_copy.parent / "ref", tiny_model)
    ref.add([d["text"] for d in docs], ids=ids)
    for a, b in zip(Index(index_copy, create=False).vectors(ids), ref.vectors(ids)):
        np.testing.assert_array_equal(a, b)

    assert client.post("/documents", json={"documents": docs[:1]}).status_code == 409
    r = client.post("/documents", json={"documents": [{"id": ids[0], "text": "Replaced.", "metadata": {"v": 2}}], "upsert": True})
    assert r.status_code == 200
    assert client.get("/documents/" + quote(ids[0], safe="")).json()["text"] == "Replaced."

    r = client.request("DELETE", "/documents", json={"ids": [ids[0], "penguins-en"]})
    assert r.json() == {"deleted": 2}
    assert client.get("/documents/penguins-en").status_code == 404
    hits = client.post("/search", json={"query": "Emperor penguins breed", "k": 50}).json()["hits"]
    assert "penguins-en" not in _ids(hits)
    r = client.request("DELETE", "/documents", json={"ids": ["penguins-es", "no-such-id"]})
    assert r.status_code == 404 and r.json()["error"] == "not_found" and "no-such-id" in r.json()["detail"]
    assert client.get("/documents/penguins-es").status_code == 200  # nothing was deleted
    assert client.request("DELETE", "/documents", json={"ids": ["no-such-id"], "missing_ok": True}).json() == {"deleted": 0}


def test_list_pages_and_filters(client):
    first = client.get("/documents", params={"limit": 10}).json()["documents"]
    second = client.get("/documents", params={"limit": 10, "after": first[-1]["id"]}).json()["documents"]
    all_ids = sorted(r["id"] for r in sample_corpus())
    assert [d["id"] for d in first + second] == all_ids[:20]
    de = client.get("/documents", params={"filter": json.dumps({"lang": "de"})}).json()["documents"]
    assert sorted(d["id"] for d in de) == ["coffee-de", "penguins-de", "volcanoes-de"]
    assert client.get("/documents", params={"filter": "{oops"}).status_code == 400
    assert client.get("/documents", params={"filter": "[1]"}).status_code == 422


@pytest.mark.filterwarnings("ignore:1 of 2 documents were longer")
def test_long_documents_are_reported_truncated(client, tiny_model):
    long = "penguin " * (tiny_model.settings.document_length + 10)
    r = client.post("/documents", json={"documents": [{"id": "long", "text": long}, {"id": "short", "text": "short"}]})
    assert r.json()["truncated"] == ["long"]


# -- service ------------------------------------------------------------------------------------
def test_health_and_info(client, tiny_model):
    h = client.get("/health").json()
    assert h["status"] == "ready" and h["ready"] and not h["auth_required"] and h["has_index"]
    info = client.get("/info").json()
    assert info["index"]["documents"] == 36 and info["metadata_keys"] == {"lang": 36, "topic": 36}
    assert info["model"]["fingerprint"] == tiny_model.describe()["fingerprint"]
    assert info["batching"]["enabled"] and info["limits"]["max_k"] == 1000
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert client.get("/static/demo.js").status_code == 200
    assert client.get("/openapi.json").json()["paths"].keys() >= {"/search", "/rerank", "/encode", "/documents",
                                                                  "/documents/{doc_id}", "/health", "/info"}
    assert client.get("/docs").status_code == 200


def test_rerank_and_encode_without_an_index(tiny_model):
    with serving(None, tiny_model) as c:
        assert c.get("/health").json()["has_index"] is False
        assert c.post("/rerank", json={"query": "a", "documents": ["b", "c"]}).status_code == 200
        r = c.post("/search", json={"query": "a"})
        assert r.status_code == 404 and r.json()["error"] == "no_index"
        assert c.get("/documents/x").json()["error"] == "no_index"
        assert c.get("/info").json()["index"] is None


# -- errors -------------------------------------------------------------------------------------
def _error(r, status, code=None):
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) >= {"error", "detail"} and "Traceback" not in r.text
    if code:
        assert body["error"] == code
    return body


@pytest.mark.parametrize("body, where", [
    ({"query": 3}, "query"),
    ({"query": ""}, "query"),
    ({"query": "a", "k": "10"}, "k"),
    ({"query": "a", "k": 0}, "k"),
    ({"query": "a", "k": True}, "k"),
    ({"query": "a", "explain": "yes"}, "explain"),
    ({"query": "a", "colour": "red"}, "colour"),
    ({"query": "a", "queries": ["b"]}, "exactly one"),
    ({}, "exactly one"),
    ({"queries": []}, "queries"),
    ({"query": "a", "filter": {"lang": {"$ne": "en"}}}, "filter"),
    ({"query": "a", "filter": {"bad key!": "x"}}, "bad filter key"),
    ({"query": "a", "mode": "fuzzy"}, "mode"),
    ({"query": "a", "alpha": 0.5}, "alpha"),
    ({"query": "a", "mode": "hybrid", "alpha": 1.5}, "alpha"),
    ({"query": "a", "mode": "hybrid", "alpha": "0.5"}, "alpha"),
])
def test_invalid_search_requests_are_422(client, body, where):
    assert where in _error(client.post("/search", json=body), 422, "invalid_request")["detail"]


def test_bad_json_is_400_and_other_media_types_415(client):
    _error(client.post("/search", content=b'{"query": ', headers={"content-type": "application/json"}), 400, "invalid_json")
    _error(client.post("/search", content=b'{"query": NaN}', headers={"content-type": "application/json"}), 422)
    _error(client.post("/search", content=b"query=a", headers={"content-type": "application/x-www-form-urlencoded"}),
           415, "unsupported_media_type")
    r = client.post("/documents", content=b'{"documents": [{"text": "x", "metadata": {"v": NaN}}]}',
                    headers={"content-type": "application/json"})
    assert "not a JSON number" in _error(r, 422)["detail"]


def test_unknown_routes_methods_and_ids_are_json(client):
    _error(client.get("/nope"), 404, "not_found")
    _error(client.put("/search", json={}), 405)
    _error(client.get("/documents/no-such-doc"), 404, "not_found")


def test_size_limits_are_413(index_copy, tiny_model):
    limits = Limits(max_body_bytes=2000, max_texts=3, max_text_chars=50, max_k=20)
    with serving(index_copy, tiny_model, limits=limits) as c:
        _error(c.post("/search", json={"query": "x" * 3000}), 413, "too_large")  # Content-Length over the bound

        def chunks():  # no Content-Length: counted as it streams
            for _ in range(10):
                yield b" " * 500
            yield b'{"query": "a"}'

        _error(c.post("/search", content=chunks(), headers={"content-type": "application/json"}), 413, "too_large")
        _error(c.post("/search", json={"queries": ["a", "b", "c", "d"]}), 413, "too_many_texts")
        _error(c.post("/search", json={"query": "x" * 51}), 413, "text_too_long")
        _error(c.post("/rerank", json={"query": "a", "documents": ["b"] * 4}), 413, "too_many_texts")
        _error(c.post("/encode", json={"texts": ["y" * 51]}), 413, "text_too_long")
        _error(c.post("/documents", json={"documents": [{"text": "z" * 60}]}), 413, "text_too_long")
        _error(c.request("DELETE", "/documents", json={"ids": ["a", "b", "c", "d"]}), 413, "too_many_texts")
        _error(c.post("/search", json={"query": "a", "k": 21}), 422, "invalid_request")
        assert c.post("/search", json={"query": "a", "k": 20}).status_code == 200


def test_api_key(index_copy, tiny_model):
    with serving(index_copy, tiny_model, api_key="s3cret") as c:
        assert c.get("/health").json()["auth_required"] is True  # probes need no key
        assert c.get("/").status_code == 200  # nor does the page (it asks for the key)
        r = c.post("/search", json={"query": "a"})
        _error(r, 401, "unauthorized")
        assert r.headers["www-authenticate"] == "Bearer"
        _error(c.post("/search", json={"query": "a"}, headers={"Authorization": "Bearer wrong"}), 401, "unauthorized")
        _error(c.post("/search", json={"query": "a"}, headers={"Authorization": "Basic czNjcmV0"}), 401)
        _error(c.get("/info", headers={"Authorization": "Bearer s3cre"}), 401)
        _error(c.get("/info", headers={"Authorization": "Bearer s3cret2"}), 401)
        ok = {"Authorization": "Bearer s3cret"}
        assert c.post("/search", json={"query": "a"}, headers=ok).status_code == 200
        assert c.get("/info", headers=ok).status_code == 200
        assert c.get("/documents/penguins-en", headers=ok).status_code == 200


def test_read_only_rejects_writes(index_copy, tiny_model):
    with serving(index_copy, tiny_model, read_only=True) as c:
        _error(c.post("/documents", json={"documents": [{"text": "x"}]}), 403, "read_only")
        _error(c.request("DELETE", "/documents", json={"ids": ["penguins-en"]}), 403, "read_only")
        assert c.post("/search", json={"query": "a"}).status_code == 200
        assert c.get("/health").json()["read_only"] is True
    assert Index(index_copy, create=False).get("penguins-en") is not None


def test_read_only_needs_an_existing_index(tmp_path, tiny_model):
    from fastapi.testclient import TestClient

    with TestClient(create_app(tmp_path / "missing", tiny_model, read_only=True), raise_server_exceptions=False) as c:
        for _ in range(100):
            h = c.get("/health").json()
            if h["status"] != "loading":
                break
            time.sleep(0.05)
        assert h["status"] == "failed" and "--read-only" in h["error"]
        _error(c.post("/search", json={"query": "a"}), 503, "failed")
    assert not (tmp_path / "missing").exists()


def test_busy_server_answers_429_and_503(index_copy, tiny_model):
    model = BlockingModel(tiny_model)
    held = []

    def hold(c):
        held.append(c.post("/search", json={"query": "held"}))

    for limits, status, code in [(Limits(max_concurrent=5, max_per_client=1), 429, "too_many_requests"),
                                 (Limits(max_concurrent=1, max_per_client=0), 503, "overloaded")]:
        model.release.clear()
        model.entered.clear()
        with serving(index_copy, model, limits=limits) as c:
            t = threading.Thread(target=hold, args=(c,))
            t.start()
            assert model.entered.wait(10)
            r = c.post("/search", json={"query": "second"})
            _error(r, status, code)
            assert r.headers["retry-after"] == "1"
            assert c.get("/health").status_code == 200  # probes are never refused
            model.release.set()
            t.join(10)
            assert held[-1].status_code == 200
            assert c.post("/search", json={"query": "again"}).status_code == 200  # the slot was given back


def test_loading_is_503_with_retry_after(index_copy, tiny_model, monkeypatch):
    from lfm_colbert.server.engine import Engine

    gate = threading.Event()
    original = Engine._open

    def slow_open(self):
        gate.wait(10)
        return original(self)

    monkeypatch.setattr(Engine, "_open", slow_open)
    from fastapi.testclient import TestClient

    with TestClient(create_app(index_copy, tiny_model), raise_server_exceptions=False) as c:
        h = c.get("/health")
        assert h.status_code == 503 and h.json()["status"] == "loading"
        r = c.post("/search", json={"query": "a"})
        _error(r, 503, "loading")
        assert r.headers["retry-after"] == "1"
        gate.set()
        wait_ready(c)
        assert c.post("/search", json={"query": "a"}).status_code == 200


def test_unexpected_errors_are_500_without_a_traceback(client, monkeypatch):
    engine = client.app.state.engine

    async def boom(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(engine, "search", boom)
    body = _error(client.post("/search", json={"query": "a"}), 500, "internal_error")
    assert "secret internals" not in body["detail"] and "RuntimeError" in body["detail"]


def test_a_failing_job_does_not_fail_its_batch_mates(index_copy, tiny_model):
    model = BlockingModel(tiny_model)
    with serving(index_copy, model) as c:
        model.release.set()
        c.post("/search", json={"query": "warm up"})
        model.release.clear()
        model.entered.clear()
        out = {}

        def send(name, body):
            out[name] = c.post("/search", json=body)

        first = threading.Thread(target=send, args=("first", {"query": "first"}))
        first.start()
        assert model.entered.wait(10)  # the worker is busy: the next three queue up and share a pass
        threads = [threading.Thread(target=send, args=(n, b)) for n, b in [
            ("good", {"query": "penguins", "k": 3}), ("bad", {"query": "penguins", "k": 3, "filter": {"x": []}}),
            ("other", {"query": "coffee", "k": 2})]]
        for t in threads:
            t.start()
        time.sleep(0.3)
        model.release.set()
        for t in [first, *threads]:
            t.join(20)
        assert out["first"].status_code == out["good"].status_code == out["other"].status_code == 200
        assert "empty list" in _error(out["bad"], 422)["detail"]
        assert max(c.app.state.engine.worker.batches) >= 2  # they did share a forward pass
