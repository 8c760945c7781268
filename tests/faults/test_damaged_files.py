"""Damaged files are detected and named, never used and never deleted (issue 14, defects 7 and 8, and
the damaged-file matrix: truncate, flip, delete, empty over every kind of file an index holds)."""

from __future__ import annotations

import json
import shutil
import sqlite3

import pytest
from faultkit import MODEL, flip_byte, queries, truncate, vectors

from lfm_colbert.errors import IndexFormatError, LfmColbertError
from lfm_colbert.index import Index

Q = queries(1)[0]


def _build(path, compress=None, rescore=False):
    index = Index(path, MODEL, compress=compress, n_centroids=4 if compress else None, rescore=rescore,
                  train_tokens=1 if compress else None)
    index.add_vectors(vectors(12, seed=1), ids=[f"d{i}" for i in range(12)],
                      texts=[f"text number {i}" for i in range(12)], metadata=[{"lang": "en", "n": i} for i in range(12)])
    index.close()


@pytest.fixture(scope="module")
def templates(tmp_path_factory):
    root = tmp_path_factory.mktemp("templates")
    _build(root / "exact")
    _build(root / "plaid", compress=2, rescore=True)
    return root


def _copy(templates, kind, tmp_path):
    path = tmp_path / kind
    shutil.copytree(templates / kind, path)
    return path


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*")
            if p.is_file() and p.name != ".lock" and "readers" not in p.parts}


def _target(path, name):
    if name in ("manifest.json", "catalog.sqlite"):
        return path / name
    if name.startswith("codec/"):
        return path / name
    return next((path / "segments").rglob(name))


def _flip(target):
    """One changed byte where it matters: inside a stored text (catalog), a value (manifest), the data
    (arrays; the last bytes are data, the first ones the header)."""
    data = target.read_bytes()
    if target.name == "catalog.sqlite":
        flip_byte(target, data.index(b"text number 3") + 2)
    elif target.name == "manifest.json":
        flip_byte(target, data.index(b"vectors-only") + 1)
    else:
        flip_byte(target, len(data) - 3)


DAMAGE = {
    "truncate": truncate,
    "flip": _flip,
    "delete": lambda p: p.unlink(),
    "empty": lambda p: p.write_bytes(b""),
}
FILES = [("exact", f) for f in ("manifest.json", "catalog.sqlite", "vectors.npy", "doclens.npy")] + [
    ("plaid", f) for f in ("codes.npy", "residuals.npy", "ivf_offsets.npy", "ivf_docs.npy", "doclens.npy", "vectors.npy",
                           "codec/centroids.npy", "codec/pq_centroids.npy")
]


@pytest.mark.parametrize("damage", list(DAMAGE))
@pytest.mark.parametrize("kind, name", FILES)
def test_damaged_file_matrix(templates, tmp_path, kind, name, damage):
    path = _copy(templates, kind, tmp_path)
    target = _target(path, name)
    shown = target.name
    DAMAGE[damage](target)
    after_damage = _files(path)

    errors = []
    for read in (lambda ix: ix.search_vectors(Q, k=12), lambda ix: ix.get([f"d{i}" for i in range(12)]),
                 lambda ix: ix.list(), lambda ix: ix.vectors(["d3"]), lambda ix: ix.info(), lambda ix: ix.verify_files()):
        try:
            read(Index(path))
        except LfmColbertError as exc:
            errors.append(str(exc))
    assert errors, "nothing noticed the damage"
    assert any(shown in e for e in errors), errors  # the damaged file is named
    with pytest.raises(IndexFormatError, match=shown.replace(".", r"\.")):
        Index(path).verify_files()
    assert _files(path) == after_damage  # reading changed nothing

    try:  # a writer must not build on damaged files, nor delete anything
        Index(path, MODEL).add_vectors(vectors(1, seed=50), ids=["new"])
        added = True
    except LfmColbertError:
        added = False
    now = _files(path)
    if not added:
        assert now == after_damage
    else:  # a write that never read the damaged part (a text): everything else is still there
        assert all(now.get(f) == b for f, b in after_damage.items() if f not in ("catalog.sqlite", "manifest.json"))
        with pytest.raises(IndexFormatError, match=shown.replace(".", r"\.")):
            Index(path).verify_files()


def _sql(path, statement, *params):
    conn = sqlite3.connect(path / "catalog.sqlite")
    conn.execute(statement, params)
    conn.commit()
    conn.close()


def test_garbled_segment_record_is_named(templates, tmp_path, capsys):
    """Defect 7: a garbled segments.files JSON raised JSONDecodeError (a CLI traceback)."""
    from lfm_colbert.cli import main

    path = _copy(templates, "exact", tmp_path)
    _sql(path, "UPDATE segments SET files = '{\"vectors.npy\": \"ab'")
    with pytest.raises(IndexFormatError, match="catalog.sqlite"):
        Index(path).search_vectors(Q)
    assert main(["info", str(path), "--verify"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "catalog.sqlite" in err and err.count("\n") == 1


def test_garbled_checksum_is_blamed_on_the_catalog(templates, tmp_path):
    """Defect 8: a garbled checksum in the catalog was reported as a corrupted .npy file."""
    path = _copy(templates, "exact", tmp_path)
    conn = sqlite3.connect(path / "catalog.sqlite")
    files = json.loads(conn.execute("SELECT files FROM segments").fetchone()[0])
    conn.close()
    files["vectors.npy"] = "zz" + files["vectors.npy"][2:]
    _sql(path, "UPDATE segments SET files = ?", json.dumps(files))
    for call in (lambda: Index(path).search_vectors(Q), lambda: Index(path).verify_files()):
        with pytest.raises(IndexFormatError, match="catalog.sqlite") as err:
            call()
        assert "vectors.npy" not in str(err.value).split("catalog.sqlite")[0]


@pytest.mark.parametrize("edit", ["cut", "changed"])
def test_damaged_metadata_is_never_served(templates, tmp_path, edit):
    """Defect 7: cut metadata JSON raised JSONDecodeError at search while verify passed; a changed
    metadata value was served as is."""
    path = _copy(templates, "exact", tmp_path)
    _sql(path, "UPDATE docs SET metadata = ? WHERE id = 'd3'", '{"lang": "en", "n": ' if edit == "cut" else '{"lang": "en", "n": 4}')
    index = Index(path)
    for call in (lambda: index.search_vectors(Q, k=12), lambda: index.get("d3"), lambda: index.list(),
                 lambda: index.verify_files(), lambda: index.search_vectors(Q, k=12, filter={"n": 4})):
        with pytest.raises(IndexFormatError, match="catalog.sqlite"):
            call()
    assert index.get("d4").metadata == {"lang": "en", "n": 4}  # undamaged rows still read


@pytest.mark.parametrize("key", ["storage", "codec", "dim", "model", "version"])
def test_a_manifest_missing_a_key_is_named(templates, tmp_path, key, capsys):
    """Defect 7: a manifest missing a key gave KeyError: 'storage' at open, KeyError: 'codec' at
    search, while info --verify exited 0."""
    from lfm_colbert.cli import main

    path = _copy(templates, "plaid", tmp_path)
    manifest = json.loads((path / "manifest.json").read_text())
    del manifest[key]
    manifest.pop("checksum", None)  # as if written by hand, or by an older version
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexFormatError, match="manifest.json"):
        index = Index(path)
        index.search_vectors(Q)
    assert main(["info", str(path), "--verify"]) == 2
    assert "manifest.json" in capsys.readouterr().err
