"""One writer, many readers, through the API of a real uvicorn server: readers search while a writer
adds and deletes; no request fails, each search sees a whole write or none of it, and every
acknowledged write is visible afterwards."""

from __future__ import annotations

import threading
import time

import httpx
from serve_helpers import corpus_index, index_copy, uvicorn_server, wait_ready  # noqa: F401

from lfm_colbert.server import create_app

BATCHES = 12
BATCH_SIZE = 5
CORPUS_DELETES = ["penguins-en", "coffee-en", "volcanoes-en", "penguins-de"]
QUERIES = ["penguins in the snow", "café de Colombia", "volcán activo", "ペンギン", "البطريق", "Vulkan"]


def _batch(i: int) -> list[dict]:
    return [{"id": f"b{i}-{j}", "text": f"Batch {i} note {j}: penguins, coffee and volcanoes, item {i * 10 + j}.",
             "metadata": {"batch": i}} for j in range(BATCH_SIZE)]


def test_readers_and_a_writer(index_copy, tiny_model):
    app = create_app(index_copy, tiny_model)
    errors: list[str] = []
    acked_adds: list[int] = []
    acked_deletes: list[int] = []
    writer_done = threading.Event()
    searches = [0]

    with uvicorn_server(app) as url:
        with httpx.Client(base_url=url, timeout=60) as c:
            wait_ready(c)

        def reader(seed: int) -> None:
            with httpx.Client(base_url=url, timeout=60) as c:
                i = seed
                deadline = time.monotonic() + 120
                while not writer_done.is_set() and time.monotonic() < deadline:
                    i += 1
                    r = c.post("/search", json={"query": QUERIES[i % len(QUERIES)], "k": 60})
                    if r.status_code != 200:
                        errors.append(f"search {r.status_code}: {r.text}")
                        continue
                    hits = r.json()["hits"]
                    scores = [h["score"] for h in hits]
                    if len({h["id"] for h in hits}) != len(hits) or scores != sorted(scores, reverse=True):
                        errors.append(f"bad hit list {hits}")
                    b = i % BATCHES
                    r = c.post("/search", json={"query": "penguins", "k": 50, "filter": {"batch": b}})
                    n = len(r.json()["hits"]) if r.status_code == 200 else -1
                    if n not in (0, BATCH_SIZE):  # one committed state: the whole batch, or none of it
                        errors.append(f"batch {b}: {n} of {BATCH_SIZE} documents visible ({r.status_code})")
                    searches[0] += 2

        def writer() -> None:
            try:
                with httpx.Client(base_url=url, timeout=120) as c:
                    for i in range(BATCHES):
                        r = c.post("/documents", json={"documents": _batch(i)})
                        if r.status_code != 200:
                            errors.append(f"add {r.status_code}: {r.text}")
                            continue
                        acked_adds.append(i)
                        if i % 3 == 2:  # delete an older batch, and a document of the corpus
                            ids = [d["id"] for d in _batch(i - 2)] + [CORPUS_DELETES[i // 3]]
                            r = c.request("DELETE", "/documents", json={"ids": ids})
                            if r.status_code != 200 or r.json()["deleted"] != BATCH_SIZE + 1:
                                errors.append(f"delete {r.status_code}: {r.text}")
                            else:
                                acked_deletes.append(i - 2)
            finally:
                writer_done.set()

        threads = [threading.Thread(target=reader, args=(s,)) for s in range(3)] + [threading.Thread(target=writer)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(180)
        assert not errors, errors[:5]
        assert len(acked_adds) == BATCHES and len(acked_deletes) == BATCHES // 3
        assert searches[0] >= 20  # the readers really ran alongside the writes

        with httpx.Client(base_url=url, timeout=60) as c:
            for i in range(BATCHES):
                ids = [d["id"] for d in _batch(i)]
                docs = c.get("/documents", params={"id": ids}).json()["documents"]
                hits = c.post("/search", json={"query": "penguins", "k": 50, "filter": {"batch": i}}).json()["hits"]
                if i in acked_deletes:
                    assert docs == [None] * BATCH_SIZE and hits == []
                else:
                    assert [d["id"] for d in docs] == ids and sorted(h["id"] for h in hits) == sorted(ids)
            info = c.get("/info").json()["index"]
            assert info["documents"] == 36 - len(acked_deletes) + BATCH_SIZE * (BATCHES - len(acked_deletes))
