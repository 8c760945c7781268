"""Readers answer from one committed state, whatever writers do meanwhile (issue 14, defects 3 and 5),
in other processes and in other threads of the same process."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
from faultkit import MODEL, child_env, patch_everywhere, queries, vectors

import lfm_colbert.index.index  # noqa: F401  (loads every module the index calls into)
from lfm_colbert.index import Index, segments
from lfm_colbert.scoring import maxsim

N = 300


@pytest.fixture
def built(tmp_path):
    docs = vectors(N + 200, seed=11)
    path = tmp_path / "idx"
    index = Index(path, MODEL)
    for s in range(0, N, 30):  # ten segments, so merges and compactions move documents around
        index.add_vectors(docs[s : s + 30], ids=[f"d{i}" for i in range(s, s + 30)], texts=[f"t{i}" for i in range(s, s + 30)])
    index.close()
    return path, docs


def _during_each_scan(action):
    """Run `action()` every time a search scans exact segments: a writer committing mid-search."""

    def make(real):
        def scan(*args, **kw):
            action()
            return real(*args, **kw)

        return scan

    return make


def test_hits_moved_by_commits_mid_search_are_all_returned(built, monkeypatch):
    """Defect 3: a search that met several commits in a row dropped every hit that had merely moved
    (k=20 gave 0, 0, 1, 16, 19 hits). A search answers from the state it started on."""
    path, docs = built
    reader, writer = Index(path), Index(path)
    q = queries(1)[0]
    want = reader.search_vectors(q, k=20)
    assert len(want) == 20
    n = [0]

    def writer_moves_the_top_hits():  # upserting the same vectors moves each hit to a new segment
        n[0] += 1
        top = [int(h.id[1:]) for h in want]
        writer.add_vectors([docs[i] for i in top], ids=[f"d{i}" for i in top], texts=[f"t{i}" for i in top], upsert=True)

    patch_everywhere(monkeypatch, "exact_search", _during_each_scan(writer_moves_the_top_hits))
    got = reader.search_vectors(q, k=20)
    assert n[0] >= 1
    assert [(h.id, h.text) for h in got] == [(h.id, h.text) for h in want]
    assert [h.score for h in got] == pytest.approx([h.score for h in want], abs=1e-5)


def test_a_reader_keeps_the_files_of_the_state_it_reads(built, monkeypatch):
    """Defect 5: verify_files() during a compaction reported 'missing index file .../vectors.npy'
    on a healthy index; it must check one committed state, whose files stay until it is done."""
    path, docs = built
    reader, writer = Index(path), Index(path)
    real, calls = segments.load_npy, []

    def load_while_a_writer_compacts(*args, **kw):
        calls.append(1)
        if len(calls) == 1:  # deleting a third of everything rewrites every segment and retires the old files
            writer.delete([f"d{i}" for i in range(0, N, 3)])
        return real(*args, **kw)

    monkeypatch.setattr(segments, "load_npy", load_while_a_writer_compacts)
    reader.verify_files()
    assert calls
    info = reader.info()
    assert info["documents"] in (N, N - N // 3)
    monkeypatch.undo()
    assert len(reader) == N - N // 3
    reader.verify_files()


WRITER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    from faultkit import vectors
    from lfm_colbert.index import Index
    docs = vectors({n} + 200, seed=11)
    index = Index(sys.argv[1])
    for r in range(int(sys.argv[2])):
        i = {n} + r % 200
        index.add_vectors([docs[i]], ids=[f"x{{r}}"], texts=["x"])              # small adds: merges
        index.add_vectors(docs[r % 40 : r % 40 + 5], ids=[f"d{{j}}" for j in range(r % 40, r % 40 + 5)],
                          texts=[f"t{{j}}" for j in range(r % 40, r % 40 + 5)], upsert=True)  # moves
        if r % 6 == 5:
            index.delete([f"x{{j}}" for j in range(r - 5, r + 1)])             # compaction
    print("done", flush=True)
    """
)


def _check_hits(hits, q, docs, k):
    """k hits, distinct, each scored as MaxSim of its own stored vectors (one state, nothing mixed)."""
    assert len(hits) == k, f"{len(hits)} hits, not {k}"
    assert len({h.id for h in hits}) == k
    for h in hits[:3]:
        i = int(h.id[1:]) if h.id[0] == "d" else None
        if i is not None:
            assert h.score == pytest.approx(float(maxsim(q, [docs[i]])[0]), abs=2e-2)


def test_searches_info_and_verify_racing_a_writer_process(built):
    """A reader in this process, a writer in another: every search has k hits, info() and
    verify_files() never fail (before: raw FileNotFoundError, 'missing index file')."""
    path, docs = built
    code = WRITER.format(tests=str(Path(__file__).resolve().parent), n=N)
    writer = subprocess.Popen([sys.executable, "-c", code, str(path), "30"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=child_env())
    reader = Index(path)
    qs = queries(4)
    rounds = 0
    try:
        while writer.poll() is None or rounds < 3:
            q = qs[rounds % 4]
            _check_hits(reader.search_vectors(q, k=20), q, docs, 20)
            assert reader.info()["documents"] >= N
            if rounds % 3 == 0:
                reader.verify_files()
            rounds += 1
    finally:
        out, err = writer.communicate(timeout=300)
    assert writer.returncode == 0, err
    assert rounds > 3
    final = Index(path)
    assert reader.search_vectors(qs, k=20) == final.search_vectors(qs, k=20)


def test_threads_search_while_another_thread_writes(built):
    """One Index shared by search threads while a thread writes through it (as an HTTP server does),
    and a second Index on the same directory writing too: every search has k hits."""
    path, docs = built
    shared = Index(path)
    other = Index(path)
    stop = threading.Event()
    errors: list[BaseException] = []
    counts = [0, 0, 0]
    qs = queries(4)

    def searcher(slot):
        try:
            while not stop.is_set():
                q = qs[counts[slot] % 4]
                _check_hits(shared.search_vectors(q, k=15), q, docs, 15)
                assert shared.get(["d100"])[0] is not None
                counts[slot] += 1
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def writer(index, prefix, rounds):
        try:
            for r in range(rounds):
                i = N + (r * 7) % 200
                index.add_vectors([docs[i]], ids=[f"{prefix}{r}"], texts=["w"])
                top = [int(h.id[1:]) for h in index.search_vectors(qs[r % 4], k=3) if h.id[0] == "d"]
                index.add_vectors([docs[j] for j in top], ids=[f"d{j}" for j in top],
                                  texts=[f"t{j}" for j in top], upsert=True)
                if r % 5 == 4:
                    index.delete([f"{prefix}{j}" for j in range(r - 4, r + 1)])
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    readers = [threading.Thread(target=searcher, args=(s,)) for s in range(2)]
    writers = [threading.Thread(target=writer, args=(shared, "s", 10)), threading.Thread(target=writer, args=(other, "o", 10))]
    for t in readers + writers:
        t.start()
    for t in writers:
        t.join(timeout=300)
    stop.set()
    for t in readers:
        t.join(timeout=60)
    assert not errors, errors[0]
    assert min(counts[:2]) > 0
    assert len(shared) == N
    shared.verify_files()
    assert shared.search_vectors(qs, k=10) == Index(path).search_vectors(qs, k=10)
    np.testing.assert_array_equal(shared.vectors(["d5"])[0], np.asarray(docs[5], np.float16).astype(np.float32))
