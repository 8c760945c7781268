"""`lfm-colbert serve` as a process: it refuses unsafe or impossible starts with one clear line, and
SIGTERM drains: a write in progress is answered and committed, then the process exits cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from serve_helpers import corpus_index, free_port, index_copy  # noqa: F401

from lfm_colbert.cli import main
from lfm_colbert.index import Index


def start_server(index: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    """`python -m lfm_colbert serve DIR` on a free loopback port, once /health says ready."""
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("LFM_COLBERT_API_KEY", None)
    proc = subprocess.Popen([sys.executable, "-m", "lfm_colbert", "serve", str(index), "--port", str(port), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the server exited ({proc.returncode}): {proc.stdout.read()}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"the server did not become ready: {proc.stdout.read()}")


def test_a_public_bind_needs_a_key(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("LFM_COLBERT_API_KEY", raising=False)
    assert main(["serve", str(tmp_path / "idx"), "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: binding to 0.0.0.0") and "LFM_COLBERT_API_KEY" in err and err.count("\n") == 1
    assert not (tmp_path / "idx").exists()


@pytest.mark.parametrize("args, message", [
    (["--read-only"], "no lfm-colbert index at"),
    (["--port", "70000"], "--port must be between"),
    (["--max-batch", "0"], "max_batch must be a positive integer"),
    (["--workers", "0"], "--workers must be at least 1"),
])
def test_bad_starts_are_one_line_errors(tmp_path, capsys, args, message):
    assert main(["serve", str(tmp_path / "missing"), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err


def test_a_foreign_directory_is_refused(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "manifest.json").write_text("{}")
    assert main(["serve", str(tmp_path)]) == 2
    assert "not an lfm-colbert index" in capsys.readouterr().err
    assert (tmp_path / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("drain", ["300", "0.2"])
def test_sigterm_finishes_the_write_in_progress(index_copy, drain):
    # With time to drain, the request completes normally; past --drain-timeout uvicorn cancels the
    # requests still running, and a write under way still ends committed and answered.
    proc, url = start_server(index_copy, "--drain-timeout", drain)
    docs = [{"id": f"d{i}", "text": f"Penguins, coffee and volcanoes, note {i}. " * 16} for i in range(256)]
    answer: dict = {}

    def add() -> None:
        try:
            answer["response"] = httpx.post(url + "/documents", json={"documents": docs}, timeout=300)
        except httpx.HTTPError as exc:
            answer["error"] = exc
        answer["at"] = time.monotonic()

    try:
        writer = threading.Thread(target=add)
        writer.start()
        time.sleep(0.3)  # the add is being encoded (about 33k tokens: a second or more)
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        writer.join(300)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "error" not in answer, answer
    assert answer["at"] > signalled, "the add finished before SIGTERM: this run did not test draining"
    assert answer["response"].status_code == 200, answer["response"].text
    assert len(answer["response"].json()["ids"]) == len(docs)
    # Uvicorn re-raises the signal once it has shut down gracefully (the exit a supervisor expects).
    assert proc.returncode in (0, -signal.SIGTERM), out
    assert "Application shutdown complete" in out and "Traceback" not in out
    index = Index(index_copy, create=False)
    index.verify_files()  # every file whole, every checksum right
    assert len(index) == 36 + len(docs) and index.get("d255").text == docs[255]["text"]
    with pytest.raises(httpx.TransportError):
        httpx.get(url + "/health", timeout=2)
