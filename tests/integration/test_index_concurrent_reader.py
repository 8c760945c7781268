"""A reader keeps answering, without errors, while another process writes to the same index."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from lfm_colbert.index import Index
from lfm_colbert.index.synthetic_vectors import clustered_documents, queries_for

MODEL = {"model_id": "vectors-only", "variant": "none", "dim": 128, "fingerprint": "test"}

# Small adds (merged in tiers), deletes (compaction) and the codec's training (every segment
# rewritten): each commit moves documents or removes files a reader may be using.
WRITER = textwrap.dedent(
    """
    import sys
    from lfm_colbert.index import Index
    from lfm_colbert.index.synthetic_vectors import clustered_documents
    docs, _ = clustered_documents(1200, n_clusters=64, tokens=(10, 30), seed=0)
    index = Index(sys.argv[1])
    for i in range(40, 1200, 20):
        index.add_vectors(docs[i : i + 20], ids=[f"d{j}" for j in range(i, i + 20)])
        if i % 200 == 0:
            index.delete([f"d{j}" for j in range(i - 200, i - 130)])
    """
)


def test_searches_during_writes_never_fail(tmp_path):
    docs, _ = clustered_documents(1200, n_clusters=64, tokens=(10, 30), seed=0)
    queries = queries_for(docs, 4)
    path = tmp_path / "idx"
    Index(path, MODEL, compress=2, n_centroids=32, train_tokens=12_000).add_vectors(docs[:40], ids=[f"d{j}" for j in range(40)])
    reader = Index(path)
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stderr=subprocess.PIPE, text=True)
    searches, seen = 0, set()
    try:
        while writer.poll() is None:
            hits = reader.search_vectors(queries[searches % 4], k=10)  # before: "no document at segment ..."
            assert len(hits) == 10 and len({h.id for h in hits}) == 10
            seen.add(reader.catalog.generation())
            searches += 1
    finally:
        writer.wait(timeout=120)
    assert writer.returncode == 0, writer.stderr.read()
    assert searches > 20 and len(seen) > 10  # it did search across many of the writer's commits
    assert reader.search_vectors(queries, k=10) == Index(path).search_vectors(queries, k=10)
