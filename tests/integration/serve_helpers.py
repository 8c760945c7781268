"""Shared pieces of the server tests: the sample corpus indexed with the tiny model, apps over copies
of it, and a real uvicorn server on a free loopback port."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

REPO = Path(__file__).resolve().parents[2]
PASSAGES = REPO / "examples" / "corpus" / "passages.jsonl"

pytest.importorskip("fastapi", reason="needs the serve extra: pip install 'lfm-colbert[serve]'")


def sample_corpus() -> list[dict[str, Any]]:
    """The 36 passages of examples/corpus (12 languages, 3 topics), with lang and topic metadata."""
    rows = [json.loads(line) for line in PASSAGES.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [{"id": r["id"], "text": r["text"], "metadata": {"lang": r["lang"], "topic": r["topic"]}} for r in rows]


@pytest.fixture(scope="session")
def corpus_index(tmp_path_factory, tiny_model) -> Path:
    """The sample corpus, added through the library (the reference the API must agree with)."""
    from lfm_colbert import Index

    path = tmp_path_factory.mktemp("serve") / "corpus-index"
    rows = sample_corpus()
    with Index(path, tiny_model) as index:
        index.add([r["text"] for r in rows], ids=[r["id"] for r in rows], metadata=[r["metadata"] for r in rows])
    return path


@pytest.fixture()
def index_copy(corpus_index, tmp_path) -> Path:
    """A private copy of the corpus index, for tests that write."""
    dest = tmp_path / "index"
    shutil.copytree(corpus_index, dest)
    return dest


def wait_ready(client: Any, timeout: float = 60.0) -> dict:
    """Poll /health until the model is loaded (TestClient or httpx.Client)."""
    deadline = time.monotonic() + timeout
    while True:
        r = client.get("/health")
        if r.status_code == 200:
            return r.json()
        if r.json().get("status") == "failed" or time.monotonic() > deadline:
            raise AssertionError(f"server not ready: {r.json()}")
        time.sleep(0.05)


@contextlib.contextmanager
def serving(index: Path | None, model: Any, **kwargs: Any) -> Iterator[Any]:
    """A TestClient over create_app(...), ready to answer."""
    from fastapi.testclient import TestClient

    from lfm_colbert.server import create_app

    app = create_app(index, model, **kwargs)
    with TestClient(app, raise_server_exceptions=False) as client:
        wait_ready(client)
        yield client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def uvicorn_server(app: Any) -> Iterator[str]:
    """The app under a real uvicorn server in a thread, on a free loopback port; yields its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise AssertionError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


class BlockingModel:
    """A model whose encode() waits for `release` (to hold requests in flight); all else delegated."""

    def __init__(self, model: Any) -> None:
        self._model = model
        self.release = threading.Event()
        self.entered = threading.Event()

    def encode(self, *args: Any, **kwargs: Any) -> Any:
        self.entered.set()
        if not self.release.wait(30):
            raise TimeoutError("BlockingModel was never released")
        return self._model.encode(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)
