"""The directory format: a versioned manifest, plain arrays, SQLite; wrong models and corruption are named."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import numpy as np
import pytest

from lfm_colbert.errors import IndexFormatError, InputError
from lfm_colbert.index import Index, store

MODEL = {"model_id": "model-a", "variant": "lfm2.5", "dim": 16, "fingerprint": "aaaa", "settings": {"document_length": 512}}


def _build(path, compress=None):
    rng = np.random.default_rng(0)
    docs = [rng.standard_normal((n, 16)).astype(np.float32) for n in (3, 5, 8, 2)]
    docs = [d / np.linalg.norm(d, axis=1, keepdims=True) for d in docs]
    index = Index(path, MODEL, compress=compress, n_centroids=4 if compress else None, train_tokens=1 if compress else None)
    index.add_vectors(docs, ids=["w", "x", "y", "z"], texts=["W", "X", "Y", "Z"], metadata=[{"k": i} for i in range(4)])
    index.close()
    return docs


def test_layout_is_plain_inspectable_files(tmp_path):
    _build(tmp_path / "idx")
    root = tmp_path / "idx"
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["format"] == "lfm-colbert-index" and manifest["version"] == 3
    assert manifest["model"] == MODEL and manifest["dim"] == 16
    files = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    assert {f.rsplit(".", 1)[-1] for f in files} <= {"json", "sqlite", "npy", "lock"}
    for f in files:
        if f.endswith(".npy"):
            np.load(root / f, allow_pickle=False)  # no pickled objects anywhere
    rows = sqlite3.connect(root / "catalog.sqlite").execute("SELECT id, text, metadata FROM docs ORDER BY id").fetchall()
    assert rows[0] == ("w", "W", '{"k": 0}')


def test_opening_with_another_model_is_a_clear_error(tmp_path):
    _build(tmp_path / "idx")
    other = {**MODEL, "model_id": "model-b", "fingerprint": "bbbb"}
    with pytest.raises(IndexFormatError, match="model-a.*model-b"):
        Index(tmp_path / "idx", other)
    with pytest.raises(IndexFormatError, match="dim"):
        Index(tmp_path / "idx", {**MODEL, "dim": 32})
    Index(tmp_path / "idx", dict(MODEL))  # the same model opens fine


@pytest.mark.parametrize("compress", [None, 2])
def test_a_corrupted_file_is_named_not_used(tmp_path, compress):
    _build(tmp_path / "idx", compress)
    name = "vectors.npy" if compress is None else "residuals.npy"
    target = next((tmp_path / "idx" / "segments").rglob(name))
    data = bytearray(target.read_bytes())
    data[-3] ^= 0xFF  # one flipped byte inside the array
    target.write_bytes(bytes(data))
    index = Index(tmp_path / "idx")
    with pytest.raises(IndexFormatError, match=name):
        index.search_vectors(np.ones((2, 16), np.float32))
    with pytest.raises(IndexFormatError, match=name):
        index.verify_files()


def test_broken_manifest_catalog_and_foreign_directories(tmp_path):
    _build(tmp_path / "idx")
    (tmp_path / "idx" / "manifest.json").write_text("{not json")
    with pytest.raises(IndexFormatError, match="manifest"):
        Index(tmp_path / "idx")
    _build(tmp_path / "idx2")
    (tmp_path / "idx2" / "catalog.sqlite").write_bytes(b"garbage" * 100)
    with pytest.raises(IndexFormatError, match="catalog.sqlite"):
        Index(tmp_path / "idx2").search_vectors(np.ones((2, 16), np.float32))
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("x")
    with pytest.raises(InputError, match="not an lfm-colbert index"):
        Index(tmp_path / "notes", MODEL)
    with pytest.raises(IndexFormatError, match="no lfm-colbert index"):
        Index(tmp_path / "missing", create=False)


def test_compression_is_fixed_at_creation(tmp_path):
    _build(tmp_path / "idx")
    with pytest.raises(InputError, match="exact"):
        Index(tmp_path / "idx", compress=2)
    with pytest.raises(InputError, match="2 or 4"):
        Index(tmp_path / "new", MODEL, compress=3)


def test_a_second_writer_is_refused_while_one_writes(tmp_path):
    docs = _build(tmp_path / "idx")
    index = Index(tmp_path / "idx")
    with store.writer_lock(tmp_path / "idx"):  # another writer, mid-write
        with pytest.raises(IndexFormatError, match="being written by another process"):
            index.add_vectors(docs[:1], ids=["new"])
        with pytest.raises(IndexFormatError, match="being written"):
            index.delete(["w"])
    index.add_vectors(docs[:1], ids=["new"])  # released: writing works again
    assert "new" in index and len(index) == 5


def test_the_index_needs_no_posix_only_module(tmp_path):
    """Windows has no fcntl: the index must import and lock without it."""
    code = (
        "import sys; sys.modules['fcntl'] = None\n"  # makes `import fcntl` fail, as on Windows
        "from pathlib import Path\n"
        "from lfm_colbert.index import store\n"
        f"root = Path({str(tmp_path)!r})\n"
        "with store.writer_lock(root):\n"
        "    print('locked')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "locked" in out.stdout


# The catalog as lfm-colbert 0.1.0 wrote it (catalog version 1: one row per live document).
V1_SCHEMA = """
CREATE TABLE segments (id INTEGER PRIMARY KEY, n_docs INTEGER NOT NULL, n_tokens INTEGER NOT NULL,
                       files TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE docs (id TEXT PRIMARY KEY, parent TEXT, segment INTEGER NOT NULL REFERENCES segments(id),
                   row INTEGER NOT NULL, n_tokens INTEGER NOT NULL, text TEXT, metadata TEXT NOT NULL DEFAULT '{}');
CREATE UNIQUE INDEX docs_slot ON docs(segment, row);
CREATE INDEX docs_parent ON docs(parent);
"""


def _as_written_by_0_1_0(root, version):
    """Rewrite an index as lfm-colbert 0.1.0 left it: manifest `version` without index id or checksum,
    a version 1 catalog of the same rows, no readers/ folder."""
    manifest = json.loads((root / "manifest.json").read_text())
    for key in ("index_id", "checksum"):
        del manifest[key]
    manifest["version"] = version
    if version == 1:
        del manifest["storage"]["train_tokens"], manifest["codec"]["trained_on"]
    (root / "manifest.json").write_text(json.dumps(manifest))
    new = sqlite3.connect(root / "catalog.sqlite")
    segs = new.execute("SELECT id, n_docs, n_tokens, files, created FROM segments WHERE removed IS NULL").fetchall()
    docs = new.execute("SELECT id, parent, segment, row, n_tokens, text, metadata FROM docs WHERE removed IS NULL").fetchall()
    new.close()
    (root / "catalog.sqlite").unlink()
    old = sqlite3.connect(root / "catalog.sqlite")
    old.executescript(V1_SCHEMA)
    old.executemany("INSERT INTO segments VALUES (?, ?, ?, ?, ?)", segs)
    old.executemany("INSERT INTO docs VALUES (?, ?, ?, ?, ?, ?, ?)", docs)
    old.commit()
    old.close()
    (root / "readers").rmdir()


@pytest.mark.parametrize("version", [1, 2])
def test_older_indexes_still_open_and_are_upgraded_by_the_first_write(tmp_path, version):
    """Format 2 only added float16 segments to compressed indexes awaiting their codec, so a format 1
    index (codec trained at the first add, no train_tokens) reads as it is. Format 3 versioned the
    catalog's rows: an older catalog is read as it is, and the first write upgrades it."""
    docs = _build(tmp_path / "idx", compress=2)
    want = Index(tmp_path / "idx").search_vectors(docs[1], k=4)
    _as_written_by_0_1_0(tmp_path / "idx", version)
    old = Index(tmp_path / "idx")
    assert old.search_vectors(docs[1], k=4) == want
    assert old.get("x").metadata == {"k": 1} and len(old) == 4
    if version == 1:
        assert old.train_tokens == 1 and old.info()["codec_trained_on_tokens"] is None
    old.verify_files()
    reader = Index(tmp_path / "idx")
    reader.search_vectors(docs[1], k=4)
    old.add_vectors(docs[:1], ids=["again"])  # upgrades the catalog, then writes
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert manifest["version"] == 3 and manifest["index_id"] and manifest["checksum"]
    assert len(Index(tmp_path / "idx")) == 5 and len(reader) == 5  # a reader opened before the upgrade follows
    old.delete(["w", "x"])
    assert reader.search_vectors(docs[1], k=4) == Index(tmp_path / "idx").search_vectors(docs[1], k=4)
    Index(tmp_path / "idx").verify_files()


def test_newer_formats_are_refused(tmp_path):
    _build(tmp_path / "idx")
    path = tmp_path / "idx" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["version"] = 4
    path.write_text(json.dumps(manifest))
    with pytest.raises(IndexFormatError, match="format version 4; this lfm-colbert reads versions 1, 2, 3"):
        Index(tmp_path / "idx")
