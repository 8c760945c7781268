"""PyLate's PLAID index (Stanford backend, `use_fast=False`) on bench/search.py's cached vectors.

Runs in its own environment, since PyLate pins a CUDA torch and an older transformers:
    python -m venv .bench/pylate-venv && .bench/pylate-venv/bin/pip install torch==2.13.0
    .bench/pylate-venv/bin/pip install --no-deps pylate==1.6.0
    .bench/pylate-venv/bin/pip install "sentence-transformers==5.3.0" "transformers>=4.41,<=5.3.0" datasets \\
        accelerate pandas ujson==5.12.0 ninja==1.11.1.4 fastkmeans==0.5.0 joblib filelock usearch faiss-cpu
(machine-notes §6). Its FastPlaid backend, PyLate's default, segfaults at index build on CPU torch
2.13 (fast-plaid ships wheels for torch <= 2.11 only), so the Stanford backend is the one that runs;
it compiles its C++ extensions on first use.

    .bench/pylate-venv/bin/python bench/peer_pylate.py '{"path": ".bench/minilm/corpus-100000", "docs": 3000, "queries": 50, "nbits": 2}'
prints one JSON line: build_s, qps, ids (top 10 per query, as strings of document positions).
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> int:
    import torch
    from pylate import indexes

    import minilm_corpus

    a = json.loads(sys.argv[1])
    vectors, offsets, queries, _ = minilm_corpus.load(Path(a["path"]), a["docs"])
    queries = queries[: a["queries"]]
    docs = [torch.from_numpy(np.asarray(vectors[s:e], np.float32)) for s, e in zip(offsets[:-1], offsets[1:])]
    folder = tempfile.mkdtemp(prefix="pylate-")
    try:
        t = time.perf_counter()
        index = indexes.PLAID(index_folder=folder, index_name="bench", override=True, use_fast=False, nbits=a["nbits"])
        index.add_documents(documents_ids=[str(i) for i in range(len(docs))], documents_embeddings=docs)
        build = time.perf_counter() - t
        index([queries[0]], k=10)  # warm
        t = time.perf_counter()
        res = [index([q], k=10)[0] for q in queries]
        qps = len(queries) / (time.perf_counter() - t)
        ids = [[r["id"] for r in row] for row in res]
        size = sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(json.dumps({"build_s": build, "qps": qps, "ids": ids, "bytes_per_token": size / int(offsets[-1])}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
