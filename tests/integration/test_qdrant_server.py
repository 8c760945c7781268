"""A real Qdrant server: runs when QDRANT_URL is set (e.g. http://localhost:6333), skipped otherwise.

No Qdrant server can be installed on the machine this project is developed on (no registry here
ships one; see ../shared/docs/scale-and-serve.md §2), so what only a server exercises (REST and
gRPC transport, the server's HNSW / optimizer, request size limits) is tested up to the client:
the connection settings and the gRPC conversion of our points run everywhere.
"""

from __future__ import annotations

import os
import uuid

import numpy as np
import pytest

pytest.importorskip("qdrant_client", reason="needs lfm-colbert[qdrant]")

from lfm_colbert.index import Index  # noqa: E402
from lfm_colbert.index.synthetic_vectors import clustered_documents, queries_for  # noqa: E402
from lfm_colbert.stores import open_store  # noqa: E402
from lfm_colbert.stores.qdrant import dense_vector, point_id  # noqa: E402
from lfm_colbert.stores.qdrant_backends import ClientBackend  # noqa: E402
from lfm_colbert.stores.spec import parse_spec  # noqa: E402

MODEL = {"model_id": "vectors-only", "variant": "none", "dim": 128, "fingerprint": "test"}
URL = os.environ.get("QDRANT_URL")


def test_server_connection_settings(monkeypatch):
    """What a server spec hands to QdrantClient: URL, prefix, collection, gRPC, the API key from the environment."""
    seen = {}

    class Recorder:
        def __init__(self, **kw):
            seen.update(kw)

    monkeypatch.setattr("qdrant_client.QdrantClient", Recorder)
    monkeypatch.setenv("QDRANT_API_KEY", "secret")
    b = ClientBackend.connect(parse_spec("qdrant+https://qdrant.example.com:443/base/docs?grpc=1"))
    assert b.collection == "docs" and b.remote
    assert seen == {"url": "https://qdrant.example.com:443", "prefix": "base", "api_key": "secret", "prefer_grpc": True, "timeout": 60}


def test_points_convert_to_grpc():
    """Our points as the gRPC transport sends them (the conversion a server upload with ?grpc=1 runs)."""
    from qdrant_client.conversions.conversion import RestToGrpc

    tokens = np.random.default_rng(0).standard_normal((5, 128)).astype(np.float16)
    b = ClientBackend(client=None, collection="docs", remote=True)
    payload = {"id": "d1", "text": "t", "parent": None, "metadata": {"lang": "en"}, "n_tokens": 5, "_filter": {"lang": ["en"]}}
    [struct] = b.point_structs([(point_id("d1"), tokens, dense_vector(tokens), payload)])
    grpc_point = RestToGrpc.convert_point_struct(struct)
    assert grpc_point.id.uuid == point_id("d1")
    assert grpc_point.ByteSize() < 5 * 128 * 4 * 1.2 + 2048  # about 4 bytes per number, not JSON's ~16


@pytest.mark.skipif(not URL, reason="set QDRANT_URL=http://HOST:6333 to test against a real Qdrant server "
                                   "(none can be installed where this project is developed)")
@pytest.mark.parametrize("grpc", [False, True])
def test_real_server(tmp_path, grpc):
    from qdrant_client import QdrantClient

    docs, _ = clustered_documents(400, n_clusters=128, tokens=(10, 40), seed=5)
    queries = queries_for(docs, 20, seed=6)
    ids, meta = [f"d{i}" for i in range(400)], [{"lang": ["en", "de"][i % 2], "n": i % 3} for i in range(400)]
    exact = Index(tmp_path / "exact", MODEL)
    exact.add_vectors(docs, ids=ids, metadata=meta)
    name = f"lfm_colbert_test_{uuid.uuid4().hex[:12]}"
    spec = f"qdrant+{URL.rstrip('/')}/{name}?dense=1" + ("&grpc=1" if grpc else "")
    try:
        with open_store(spec, MODEL, upload_points=50) as store:
            store.add_vectors(docs, ids=ids, metadata=meta)
            assert len(store) == 400
            got, ref = store.search_vectors(queries, k=10), exact.search_vectors(queries, k=10)
            assert np.mean([len({h.id for h in a} & {h.id for h in b}) / 10 for a, b in zip(got, ref)]) >= 0.99
            for flt in ({"lang": "en"}, {"n": [1, 2]}, {"lang": "de", "n": 0}):
                assert [[h.id for h in x] for x in store.search_vectors(queries[:3], k=10, filter=flt)] == \
                    [[h.id for h in x] for x in exact.search_vectors(queries[:3], k=10, filter=flt)]
            assert store.delete(["d0", "d1"]) == 2 and len(store) == 398
        with pytest.raises(Exception, match="fingerprint"):
            open_store(spec, {**MODEL, "fingerprint": "other"})
    finally:
        client = QdrantClient(url=URL, api_key=os.environ.get("QDRANT_API_KEY"))
        if client.collection_exists(name):  # created by this test, above
            client.delete_collection(name)
