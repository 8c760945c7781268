"""A committed write is never reported as failed (issue 14, defect 4): the merge, compaction or codec
training that follows it runs under the same lock hold, and its own failure is a warning."""

from __future__ import annotations

import errno
import subprocess
import sys
import textwrap
import warnings

import pytest
from faultkit import MODEL, child_env, vectors

from lfm_colbert.index import Index, segments, store

HOLDER = textwrap.dedent(
    """
    import sys, time
    from filelock import FileLock
    lock = FileLock(sys.argv[1], timeout=30)
    lock.acquire()
    print("held", flush=True)
    sys.stdin.read()  # until the test closes our stdin
    """
)


class _GrabOnRelease:
    """Wrap store.writer_lock: the first time a hold ends, another process takes the lock at once
    (as a second writer waiting for it would), and keeps it until `release()`."""

    def __init__(self, path):
        self.path, self.proc, self.real = path, None, store.writer_lock

    def __call__(self, root, *args, **kw):
        import contextlib

        @contextlib.contextmanager
        def hold():
            with self.real(root, *args, **kw):
                yield
            if self.proc is None:
                self.proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(self.path / ".lock")],
                                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=child_env())
                assert self.proc.stdout.readline().strip() == "held"

        return hold()

    def release(self):
        if self.proc is not None:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
            self.proc.stdout.close()


@pytest.mark.parametrize("op", ["add", "delete"])
def test_maintenance_never_turns_a_committed_write_into_an_error(tmp_path, monkeypatch, op):
    """Before: the merge (after an add) or compaction (after a delete) took the lock again after the
    commit; another writer taking it in between made the call raise 'being written by another
    process', and the retry then failed with 'already in the index' / 'not in the index'."""
    path = tmp_path / "idx"
    index = Index(path, MODEL)
    docs = vectors(40, seed=3, tokens=(4, 4))
    for i in range(7):  # seven small segments in one size tier: the eighth add merges them
        index.add_vectors(docs[i : i + 1], ids=[f"d{i}"])
    index.add_vectors(docs[10:30], ids=[f"d{i}" for i in range(10, 30)])
    grab = _GrabOnRelease(path)
    monkeypatch.setattr(store, "writer_lock", grab)
    try:
        if op == "add":
            assert index.add_vectors(docs[7:8], ids=["d7"]) == ["d7"]
        else:
            assert index.delete([f"d{i}" for i in range(10, 22)]) == 12  # 40 % of the tokens: compaction
    finally:
        grab.release()
    assert grab.proc is not None  # the lock was taken the moment the call let go of it
    monkeypatch.undo()
    reopened = Index(path)
    assert ("d7" in reopened) if op == "add" else ("d10" not in reopened and len(reopened) == 15)
    reopened.verify_files()


def test_a_failed_merge_after_the_commit_is_a_warning(tmp_path, monkeypatch):
    """The disk filling up during the merge that follows an add: the add committed, so it returns its
    ids (with a warning), and the next write merges."""
    path = tmp_path / "idx"
    index = Index(path, MODEL)
    docs = vectors(10, seed=4, tokens=(4, 4))
    for i in range(7):
        index.add_vectors(docs[i : i + 1], ids=[f"d{i}"])
    committed = []
    real_pause, real_save = store.pause_point, segments.save_npy

    def pause(name):
        if name == "add:committed":
            committed.append(name)
        real_pause(name)

    def save(p, a):
        if committed:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(p, a)

    monkeypatch.setattr(store, "pause_point", pause)
    monkeypatch.setattr(segments, "save_npy", save)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert index.add_vectors(docs[7:8], ids=["d7"]) == ["d7"]
    assert any("No space left" in str(w.message) for w in caught)
    monkeypatch.undo()
    assert "d7" in index and len(index) == 8
    index.add_vectors(docs[8:9], ids=["d8"])  # the next write does the merge
    assert index.info()["segments"] <= 2
    index.verify_files()
