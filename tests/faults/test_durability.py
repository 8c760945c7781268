"""Durability beyond SIGKILL (issue 14, defect 9): every rename the index makes follows the POSIX
sequence that survives a power cut: fsync the file (or directory) being renamed, rename, fsync
the directory that holds the new name. Same for new directories."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from faultkit import MODEL, vectors

from lfm_colbert.index import Index

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/fd to name fsynced files")


class Recorder:
    """Log fsync (by path, via /proc/self/fd), rename / replace and mkdir calls, in order."""

    def __init__(self, monkeypatch, root: Path):
        self.root, self.log = root, []
        real_fsync, real_rename, real_replace, real_mkdir = os.fsync, os.rename, os.replace, os.mkdir

        def fsync(fd):
            self.log.append(("fsync", os.path.realpath(f"/proc/self/fd/{fd}")))
            return real_fsync(fd)

        def rename(src, dst, *a, **kw):
            self.log.append(("rename", os.path.realpath(src), os.path.realpath(dst)))
            return real_rename(src, dst, *a, **kw)

        def replace(src, dst, *a, **kw):
            self.log.append(("rename", os.path.realpath(src), os.path.realpath(dst)))
            return real_replace(src, dst, *a, **kw)

        def mkdir(path, *a, **kw):
            out = real_mkdir(path, *a, **kw)
            self.log.append(("mkdir", os.path.realpath(path)))
            return out

        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "rename", rename)
        monkeypatch.setattr(os, "replace", replace)
        monkeypatch.setattr(os, "mkdir", mkdir)

    def problems(self) -> list[str]:
        out = []
        root = os.path.realpath(self.root)
        for n, entry in enumerate(self.log):
            if entry[0] == "rename":
                _, src, dst = entry
                if not dst.startswith(root):
                    continue
                before = self.log[:n]
                last_synced = [i for i, e in enumerate(before) if e == ("fsync", src)]
                if not last_synced:
                    out.append(f"{src} renamed to {dst} without an fsync of it first")
                after = self.log[n + 1 :]
                if ("fsync", os.path.dirname(dst)) not in after:
                    out.append(f"rename to {dst}: its directory is never fsynced afterwards")
            elif entry[0] == "mkdir":
                path = entry[1]
                if path.startswith(root) and ("fsync", os.path.dirname(path)) not in self.log[n + 1 :]:
                    out.append(f"mkdir {path}: its parent directory is never fsynced afterwards")
        return out


@pytest.mark.parametrize("compress", [None, 2])
def test_every_rename_is_fsynced_on_both_sides(tmp_path, monkeypatch, compress):
    rec = Recorder(monkeypatch, tmp_path)
    index = Index(tmp_path / "idx", MODEL, compress=compress, n_centroids=4 if compress else None,
                  train_tokens=40 if compress else None)
    docs = vectors(40, seed=2)
    index.add_vectors(docs[:4], ids=[f"d{i}" for i in range(4)])  # float16 first
    for i in range(4, 12):
        index.add_vectors(docs[i : i + 1], ids=[f"d{i}"])  # codec training (compressed), merges
    index.delete([f"d{i}" for i in range(0, 8)])  # compaction
    index.add_vectors(docs[12:20], ids=[f"d{i}" for i in range(12, 20)])
    assert [e for e in rec.log if e[0] == "rename"], "nothing was renamed?"
    assert rec.problems() == []
