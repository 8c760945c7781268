"""Fixtures for the framework integration tests: the sample corpus indexed with the tiny synthetic
model, its queries, and an in-test stand-in for `lfm_colbert.client.RemoteIndex`."""

from __future__ import annotations

import json
import os
import sys
import types
from pathlib import Path

import pytest

# Haystack reports pipeline runs to its telemetry service unless told not to; tests send nothing anywhere.
os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "examples" / "corpus"
QUERIES = REPO / "examples" / "queries.txt"


@pytest.fixture(scope="session")
def sample_queries() -> list[str]:
    lines = QUERIES.read_text(encoding="utf-8").splitlines()
    return [q.strip() for q in lines if q.strip() and not q.startswith("#")]


@pytest.fixture(scope="session")
def sample_index(tmp_path_factory, tiny_model):
    """examples/corpus indexed as `lfm-colbert index` does (passages, metadata), with the tiny LFM2.5 model."""
    from lfm_colbert.index import Index
    from lfm_colbert.ingest import passage_budget, read_documents, split_passages

    index = Index(tmp_path_factory.mktemp("sample") / "idx", tiny_model)
    passages = list(split_passages(read_documents([CORPUS]), passage_budget(tiny_model), tokenizer=tiny_model.tokenizer))
    index.add([p.text for p in passages], ids=[p.id for p in passages], metadata=[p.metadata for p in passages],
              parents=[p.parent for p in passages], show_progress=False)
    return index


@pytest.fixture(scope="session")
def causal_model(tiny_causal_checkpoint):
    """Another model (tiny LFM2, causal) to rerank with: its order differs from the index's."""
    from lfm_colbert import ColBERT

    return ColBERT(tiny_causal_checkpoint, backend="torch", dtype="float32", device="cpu")


class FakeRemoteIndex:
    """What `lfm_colbert.client.RemoteIndex(url, api_key=None)` offers (the serve issue's client), answering
    from a local index and passing every result through JSON as an HTTP client would. `calls` records
    what was asked, so a test can tell the remote path was taken."""

    instances: list["FakeRemoteIndex"] = []

    def __init__(self, url: str, api_key: str | None = None, *, index=None) -> None:
        from lfm_colbert.integrations._common import IndexHandle

        self.url, self.api_key, self.calls = url, api_key, []
        self._handle = IndexHandle(index if index is not None else FakeRemoteIndex.backing)  # thread-safe, like HTTP
        FakeRemoteIndex.instances.append(self)

    @staticmethod
    def _json(obj):
        return json.loads(json.dumps(obj))

    def search(self, query, k=10, filter=None):
        from lfm_colbert.index import Hit

        self.calls.append(("search", query, k, filter))
        single = isinstance(query, str)
        out = [[Hit(**self._json(h.to_dict())) for h in self._handle.call("search", q, k, filter)]
               for q in ([query] if single else query)]
        return out[0] if single else out

    def rerank(self, query, documents, k=None):
        from lfm_colbert.index import Ranked

        self.calls.append(("rerank", query, len(documents), k))
        return [Ranked(**self._json(vars(r))) for r in self._handle.call("rerank", query, documents, k)]

    def get(self, ids):
        from lfm_colbert.index import Document

        self.calls.append(("get", ids))
        single = isinstance(ids, str)
        found = [None if d is None else Document(**self._json(d.to_dict()))
                 for d in self._handle.call("get", [ids] if single else ids)]
        return found[0] if single else found

    def add(self, documents, ids=None, metadata=None):
        self.calls.append(("add", ids))
        return self._handle.call("add", documents, ids, metadata or [None] * len(documents))

    def upsert(self, documents, ids, metadata=None):
        self.calls.append(("upsert", ids))
        return self._handle.call("upsert", documents, ids, metadata or [None] * len(documents))

    def delete(self, ids):
        self.calls.append(("delete", ids))
        return len(self._handle.call("delete", ids, False))

    def info(self):  # the served /info carries the metadata keys (RemoteIndex has no metadata_keys())
        self.calls.append(("info",))
        return {"metadata_keys": self._handle.call("metadata_keys")}


@pytest.fixture
def fake_remote(monkeypatch, sample_index):
    """`lfm_colbert.client` replaced by a module whose RemoteIndex is FakeRemoteIndex over the sample index;
    returns the list of FakeRemoteIndex objects created (one per adapter given a URL)."""
    module = types.ModuleType("lfm_colbert.client")
    module.RemoteIndex = FakeRemoteIndex
    monkeypatch.setitem(sys.modules, "lfm_colbert.client", module)
    monkeypatch.setattr(FakeRemoteIndex, "backing", sample_index, raising=False)
    monkeypatch.setattr(FakeRemoteIndex, "instances", [])
    return FakeRemoteIndex.instances
