"""A writer killed in the middle of an add leaves the previous state readable and consistent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from lfm_colbert.index import Index
from lfm_colbert.index.synthetic_vectors import clustered_documents, queries_for

MODEL = {"model_id": "vectors-only", "variant": "none", "dim": 128, "fingerprint": "test"}

WRITER = textwrap.dedent(
    """
    import sys
    from lfm_colbert.index import Index
    from lfm_colbert.index.synthetic_vectors import clustered_documents
    docs, _ = clustered_documents(80, n_clusters=16, tokens=(4, 12), seed=1)
    index = Index(sys.argv[1])
    index.add_vectors(docs[40:], ids=[f"new{i}" for i in range(40)])          # killed in here
    index.delete(["old0"])
    """
)


@pytest.mark.parametrize("compress", [None, 2])
@pytest.mark.parametrize("point", ["add:segments-written", "add:before-commit"])
def test_killed_add_leaves_previous_state(tmp_path, point, compress):
    docs, _ = clustered_documents(80, n_clusters=16, tokens=(4, 12), seed=1)
    queries = queries_for(docs, 3)
    path = tmp_path / "idx"
    index = Index(path, MODEL, compress=compress, n_centroids=8 if compress else None, train_tokens=1 if compress else None)
    index.add_vectors(docs[:40], ids=[f"old{i}" for i in range(40)])
    before = index.search_vectors(queries, k=5)
    index.close()

    env = {**os.environ, "LFM_COLBERT_PAUSE_AT": point}
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, env=env, text=True)
    try:
        line = proc.stdout.readline()  # the writer announces the pause point, then sleeps
        assert line.strip() == f"paused at {point}", line
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    reopened = Index(path)
    assert len(reopened) == 40 and "new0" not in reopened and "old0" in reopened
    assert reopened.search_vectors(queries, k=5) == before
    reopened.verify_files()
    # The next writer cleans the dead writer's leftovers and works normally.
    reopened.add_vectors(docs[40:], ids=[f"new{i}" for i in range(40)])
    assert len(reopened) == 80
    on_disk = {p.name for p in (path / "segments").iterdir()}
    assert len(on_disk) == reopened.info()["segments"]
