"""Uploads to Qdrant in bounded batches: transient errors are retried, a batch that keeps failing is
named, and what was acknowledged before it stays (a client whose upsert fails on cue)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("qdrant_client", reason="needs lfm-colbert[qdrant]")

from qdrant_client import QdrantClient  # noqa: E402
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse  # noqa: E402

from lfm_colbert.stores.qdrant import QdrantStore, StoreError  # noqa: E402

MODEL = {"model_id": "vectors-only", "variant": "none", "dim": 8, "fingerprint": "test"}


class FlakyClient:
    """A real local-mode client whose upsert calls fail as `plan` says (call number -> exception)."""

    def __init__(self, plan: dict[int, BaseException]) -> None:
        self.real = QdrantClient(location=":memory:")
        self.plan = plan
        self.calls: list[int] = []  # points per upsert call, failed ones included

    def upsert(self, collection_name, points, **kw):
        self.calls.append(len(points))
        exc = self.plan.get(len(self.calls))
        if exc is not None:
            raise exc
        return self.real.upsert(collection_name, points=points, **kw)

    def __getattr__(self, name):
        return getattr(self.real, name)


def _docs(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((3, 8)).astype(np.float32) for _ in range(n)]


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch):
    monkeypatch.setattr("lfm_colbert.stores.qdrant_writes.time.sleep", lambda s: None)


def test_batches_are_bounded_and_transient_errors_retried():
    drop = ResponseHandlingException(ConnectionError("connection reset"))
    client = FlakyClient({2: drop, 3: UnexpectedResponse(503, "unavailable", b"", None)})
    store = QdrantStore("qdrant+memory:", MODEL, client=client, upload_points=10)
    store.add_vectors(_docs(35), ids=[f"d{i}" for i in range(35)])
    assert client.calls == [10, 10, 10, 10, 10, 5]  # batch 2 failed twice, then went through
    assert len(store) == 35


def test_a_failing_batch_is_named_and_earlier_batches_stay():
    down = ResponseHandlingException(ConnectionError("connection refused"))
    client = FlakyClient({3: down, 4: down, 5: down})
    store = QdrantStore("qdrant+memory:", MODEL, client=client, upload_points=10, retries=3)
    ids = [f"d{i}" for i in range(35)]
    with pytest.raises(StoreError, match=r"upload batch 3 \(documents 21-30 of this call, 'd20' to 'd29'\) in .* failed after 3 tries") as e:
        store.add_vectors(_docs(35), ids=ids)
    assert "20 documents of batches 1-2 are stored" in str(e.value)
    assert len(store) == 20 and store.get("d19") is not None and store.get("d20") is None
    store.add_vectors(_docs(35), ids=ids, upsert=True)  # as the message says: the same add again completes it
    assert len(store) == 35


def test_bad_requests_are_not_retried():
    client = FlakyClient({1: UnexpectedResponse(400, "Bad Request", b"wrong vector", None)})
    store = QdrantStore("qdrant+memory:", MODEL, client=client, upload_points=10)
    with pytest.raises(StoreError, match="upload batch 1 .*nothing of this call was stored"):
        store.add_vectors(_docs(5), ids=list("abcde"))
    assert client.calls == [5] and len(store) == 0


def test_request_size_bounds_batches():
    """Long documents are cut into batches by estimated bytes too (a server refuses requests over 32 MB)."""
    client = FlakyClient({})
    store = QdrantStore("qdrant+memory:", MODEL, client=client, upload_points=100, upload_bytes=4 * 8 * 3 * 4 + 1)
    store.add_vectors(_docs(10), ids=[f"d{i}" for i in range(10)])
    assert max(client.calls) < 10 and sum(client.calls) == 10
