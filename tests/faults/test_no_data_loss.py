"""Opening or writing to a damaged index never deletes data it did not create (issue 14, defects 1, 2, 10)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from faultkit import MODEL, child_env, vectors

from lfm_colbert.errors import IndexFormatError, LfmColbertError
from lfm_colbert.index import Index


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file() and p.name != ".lock"}


def _build(path, n=5):
    index = Index(path, MODEL)
    index.add_vectors(vectors(n), ids=[f"d{i}" for i in range(n)], texts=[f"text {i}" for i in range(n)])
    index.close()


def test_a_missing_manifest_is_an_error_not_a_new_index(tmp_path):
    """Defect 1: with manifest.json gone, opening the directory deleted the catalog and segments and
    started over (5 documents became 1, no error)."""
    path = tmp_path / "idx"
    _build(path)
    manifest = (path / "manifest.json").read_bytes()
    (path / "manifest.json").unlink()
    before = _files(path)
    for attempt in (lambda: Index(path, MODEL), lambda: Index(path), lambda: Index(path, MODEL, compress=2)):
        with pytest.raises(IndexFormatError, match="manifest.json") as err:
            attempt()
        assert "restore" in str(err.value)  # says how to recover
        assert _files(path) == before  # nothing deleted or rewritten
    (path / "manifest.json").write_bytes(manifest)
    assert len(Index(path)) == 5


def test_the_cli_refuses_a_directory_that_lost_its_manifest(tmp_path, tiny_checkpoint, capsys):
    from lfm_colbert.cli import main

    src = tmp_path / "docs.jsonl"
    src.write_text("\n".join(json.dumps({"id": f"d{i}", "text": f"document number {i}"}) for i in range(5)))
    path = tmp_path / "idx"
    assert main(["index", str(src), "--index", str(path), "--model", str(tiny_checkpoint), "-q"]) == 0
    (path / "manifest.json").unlink()
    before = _files(path)
    one = tmp_path / "one.jsonl"
    one.write_text(json.dumps({"id": "x", "text": "another document"}))
    capsys.readouterr()
    assert main(["index", str(one), "--index", str(path), "--model", str(tiny_checkpoint), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "manifest.json" in err and err.count("\n") == 1
    assert _files(path) == before


@pytest.mark.parametrize("damage", ["empty", "deleted", "foreign"])
def test_an_empty_or_foreign_catalog_is_corruption_and_segments_survive(tmp_path, damage):
    """Defect 2: a zero-length catalog opened as an empty index, passed verify_files(), and the next
    add deleted every segment directory as an orphan."""
    path = tmp_path / "idx"
    _build(path)
    catalog = path / "catalog.sqlite"
    if damage == "empty":
        catalog.write_bytes(b"")
    elif damage == "deleted":
        catalog.unlink()
    else:  # another index's catalog copied over this one
        _build(tmp_path / "other", n=3)
        catalog.write_bytes((tmp_path / "other" / "catalog.sqlite").read_bytes())
    segments = _files(path / "segments")
    with pytest.raises(IndexFormatError, match="catalog.sqlite"):
        index = Index(path)
        index.verify_files()  # (the foreign catalog is well-formed: it must not pass verification either)
        index.add_vectors(vectors(1, seed=5), ids=["new"])
    with pytest.raises(IndexFormatError, match="catalog.sqlite"):
        Index(path, MODEL).add_vectors(vectors(1, seed=5), ids=["new"])
    assert _files(path / "segments") == segments


def test_cli_info_verify_names_an_empty_catalog(tmp_path, capsys):
    from lfm_colbert.cli import main

    path = tmp_path / "idx"
    _build(path)
    (path / "catalog.sqlite").write_bytes(b"")
    assert main(["info", str(path), "--verify"]) == 2
    assert "catalog.sqlite" in capsys.readouterr().err


def test_segment_directories_the_catalog_never_named_are_left_alone(tmp_path):
    """Orphan cleanup removes only what the catalog's history shows a crashed writer abandoned."""
    path = tmp_path / "idx"
    _build(path)
    stranger = path / "segments" / "000777"
    stranger.mkdir()
    (stranger / "vectors.npy").write_bytes(b"not ours to delete")
    index = Index(path)
    index.add_vectors(vectors(3, seed=2), ids=["a", "b", "c"])
    index.delete(["d0", "d1", "d2", "d3"])  # compaction rewrites segments
    assert (stranger / "vectors.npy").read_bytes() == b"not ours to delete"
    assert len(index) == 4


CREATOR = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from faultkit import MODEL, vectors
    from lfm_colbert.errors import LfmColbertError
    from lfm_colbert.index import Index
    path, name, go = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    while not go.exists():
        time.sleep(0.001)
    try:
        Index(path, MODEL).add_vectors(vectors(3, seed=len(name)), ids=[name + str(i) for i in range(3)])
    except LfmColbertError as exc:
        print("error:", exc)
        sys.exit(2)
    print("added")
    """
)


def test_two_processes_creating_one_index_at_once(tmp_path):
    """Defect 10: creation was not under the writer lock. Two processes creating the same new index
    at the same instant both failed ('disk I/O error', 'readonly database') 6 times in 15, leaving a
    folder without a manifest. Now one creates; the other waits, or gets the clean busy error."""
    tests = str(Path(__file__).resolve().parent)
    code = CREATOR.format(tests=tests)
    go = tmp_path / "go"
    runs = []
    for r in range(6):
        path = tmp_path / f"idx{r}"
        runs.append((path, [subprocess.Popen([sys.executable, "-c", code, str(path), name, str(go)],
                                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())
                            for name in ("a", "b")]))
    time.sleep(1.5)  # let every process import and wait at the barrier
    go.touch()
    for path, procs in runs:
        outs = [p.communicate(timeout=120) for p in procs]
        added = [n for n, p, (out, err) in zip("ab", procs, outs) if p.returncode == 0]
        for p, (out, err) in zip(procs, outs):
            assert p.returncode in (0, 2), err  # no traceback
            if p.returncode == 2:
                assert "being written by another process" in out, out
        assert added, [o for o, _ in outs]
        index = Index(path)
        index.verify_files()
        assert sorted(d.id for d in index.list()) == sorted(f"{n}{i}" for n in added for i in range(3))


def test_an_abandoned_creation_is_finished_by_the_next_one(tmp_path):
    """A creator killed before writing the manifest leaves its creation marker: the next creation may
    remove what that one made (an empty catalog), and only that."""
    code = textwrap.dedent(
        """
        import sys
        sys.path.insert(0, {tests!r})
        from faultkit import MODEL
        from lfm_colbert.index import Index
        Index(sys.argv[1], MODEL)
        """
    )
    path = tmp_path / "idx"
    env = child_env(LFM_COLBERT_PAUSE_AT="create:catalog-written")
    proc = subprocess.Popen([sys.executable, "-c", code.format(tests=str(Path(__file__).resolve().parent)), str(path)],
                            stdout=subprocess.PIPE, text=True, env=env)
    line = proc.stdout.readline()
    if line.strip() != "paused at create:catalog-written":
        proc.wait(timeout=60)
        pytest.fail(f"the creator never paused: {line!r}")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    proc.stdout.close()
    assert not (path / "manifest.json").exists() and (path / "catalog.sqlite").exists()
    index = Index(path, MODEL)  # finishes the abandoned creation: a new, empty index
    index.add_vectors(vectors(2), ids=["a", "b"])
    assert len(Index(path)) == 2
    with pytest.raises(LfmColbertError):
        Index(tmp_path / "missing", create=False)
