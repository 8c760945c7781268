"""Failed CLI runs print one line, exit 2 and leave nothing behind (issue 14, defects 6 and 11)."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from faultkit import child_env

from lfm_colbert.cli import main

CORPUS = Path(__file__).resolve().parents[2] / "examples" / "corpus" / "passages.jsonl"


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_checkpoint):
    path = tmp_path_factory.mktemp("cli") / "idx"
    assert main(["index", str(CORPUS), "--index", str(path), "--model", str(tiny_checkpoint), "-q"]) == 0
    return path


def _one_line_error(capsys, *needles):
    """Check stderr is one `error: ...` line holding `needles`; returns what went to stdout."""
    out, err = capsys.readouterr()
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in err, err
    return out


def _cli(args, env=None, **kw):
    """Run the CLI in a subprocess, as a user does (argv as bytes, real pipes)."""
    code = "import sys; from lfm_colbert.cli import main; sys.exit(main())"
    if "stdout" not in kw and "stderr" not in kw:
        kw["capture_output"] = True
    return subprocess.run([sys.executable, "-c", code, *args], env=env or child_env(), timeout=300, **kw)


# -- a run that fails leaves no index behind --------------------------------------------------------
@pytest.mark.parametrize("extra, source, needle", [
    (["--overlap", "-5"], None, "--overlap"),
    (["--max-tokens", "100000"], None, "--max-tokens"),
    (["--pool-factor", "2", "--max-tokens", "100000"], None, "--max-tokens"),  # the pool factor is recorded at the first write
    ([], '{"id": "a", "text": "fine", "metadata": {"x": NaN}}', "metadata"),
    ([], '{"id": "a", "text": "bad \\ud800 text"}', "surrogate"),
    ([], '{"id": "a\\udcff", "text": "bad id"}', "surrogate"),
])
def test_a_failed_index_run_leaves_no_index(tmp_path, tiny_checkpoint, capsys, extra, source, needle):
    """Defect 11: a run that failed before adding anything left a valid, empty index (`info` then
    printed 'per token: None'); a .jsonl holding "\\ud800" gave a traceback (defect 6)."""
    src = CORPUS
    if source is not None:
        src = tmp_path / "bad.jsonl"
        src.write_text(source + "\n")
    path = tmp_path / "new"
    assert main(["index", str(src), "--index", str(path), "--model", str(tiny_checkpoint), "-q", *extra]) == 2
    _one_line_error(capsys, needle)
    assert not path.exists()
    empty = tmp_path / "empty"  # an empty directory given as the index stays as it was
    empty.mkdir()
    assert main(["index", str(src), "--index", str(empty), "--model", str(tiny_checkpoint), "-q", *extra]) == 2
    capsys.readouterr()
    assert list(empty.iterdir()) == []


@pytest.mark.parametrize("where", ["under-a-file", "read-only-parent"])
def test_an_index_directory_that_cannot_be_created(tmp_path, tiny_checkpoint, capsys, monkeypatch, where):
    """Defect 11: NotADirectoryError / PermissionError tracebacks."""
    if where == "under-a-file":
        target = tmp_path / "file.jsonl" / "sub"
        (tmp_path / "file.jsonl").write_text("{}")
    else:
        parent = tmp_path / "ro"
        parent.mkdir()
        target = parent / "sub"
        _make_read_only(parent, monkeypatch)
    assert main(["index", str(CORPUS), "--index", str(target), "--model", str(tiny_checkpoint), "-q"]) == 2
    _one_line_error(capsys, str(target))


def _make_read_only(directory: Path, monkeypatch) -> None:
    """chmod 555; as root (who ignores it) the kernel's answer is simulated for paths inside."""
    directory.chmod(0o555)
    if os.geteuid() != 0:
        return
    inside = str(directory.resolve()) + os.sep
    real_mkdir, real_open = os.mkdir, os.open

    def mkdir(path, *a, **kw):
        if os.path.abspath(path).startswith(inside):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_mkdir(path, *a, **kw)

    def open_(path, flags, *a, **kw):
        if os.path.abspath(path).startswith(inside) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *a, **kw)

    monkeypatch.setattr(os, "mkdir", mkdir)
    monkeypatch.setattr(os, "open", open_)


@pytest.mark.parametrize("command", ["index", "delete"])
def test_a_read_only_index_is_a_one_line_error(built, tmp_path, tiny_checkpoint, capsys, monkeypatch, command):
    """Defect 11: `index` and `delete` on a read-only index gave OSError tracebacks (the lock file)."""
    import shutil

    ro = tmp_path / "ro"
    shutil.copytree(built, ro)
    (ro / ".lock").unlink(missing_ok=True)
    for p in ro.rglob("*"):
        if p.is_file():
            p.chmod(0o444)
    _make_read_only(ro, monkeypatch)
    args = ["delete", str(ro), "penguins-en"] if command == "delete" else \
        ["index", str(CORPUS), "--index", str(ro), "--model", str(tiny_checkpoint), "-q", "--force"]
    try:
        assert main(args) == 2
        _one_line_error(capsys, str(ro))
        assert main(["search", str(ro), "penguins", "-k", "2"]) == 0  # reading still works
    finally:
        ro.chmod(0o755)


# -- output that cannot be written -------------------------------------------------------------------
@pytest.mark.parametrize("args", [["search", "{idx}", "penguins", "-k", "41"], ["info", "{idx}", "--json"]])
def test_a_reader_that_stops_early_gets_no_traceback(built, tiny_checkpoint, args):
    """Defect 11: `search ... | head -1` and `info --json | head -1` ended in BrokenPipeError."""
    argv = [a.format(idx=built) for a in args]
    env = child_env(LFM_COLBERT_MODEL=str(tiny_checkpoint))
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader (`head -1`) has already gone: every write fails with EPIPE
    try:
        proc = _cli(argv, env=env, stdout=write_end, stderr=subprocess.PIPE)
    finally:
        os.close(write_end)
    assert proc.stderr == b"", proc.stderr.decode()
    assert proc.returncode == 141  # as `yes | head -1` ends: killed by SIGPIPE (128 + 13)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_disk_is_a_one_line_error(built, tiny_checkpoint):
    """Defect 11: `> /dev/full` ended in a traceback."""
    with open("/dev/full", "wb") as full:
        proc = _cli(["info", str(built), "--json"], stdout=full, stderr=subprocess.PIPE)
    err = proc.stderr.decode()
    assert proc.returncode == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert "No space left" in err


# -- arguments that are not text, and numbers SQLite cannot hold ------------------------------------------
def test_non_utf8_arguments_are_one_line_errors(built, tiny_checkpoint):
    """Defect 6: a non-UTF-8 query or id argument printed a traceback and exited 1."""
    env = child_env(LFM_COLBERT_MODEL=str(tiny_checkpoint))
    for args in ([b"search", bytes(built), b"caf\xe9"], [b"delete", bytes(built), b"id-\xff"]):
        proc = _cli(args, env=env)
        err = proc.stderr.decode()
        assert proc.returncode == 2 and err.startswith("error: ") and err.count("\n") == 1, err
        assert "UTF-8" in err


@pytest.mark.parametrize("key", ["n", "lang"])
def test_a_huge_integer_filter_is_no_traceback(built, tiny_checkpoint, capsys, monkeypatch, key):
    """Defect 6: --filter n=<huge int> raised OverflowError (a traceback, exit 1). Now it is a one-line
    error, or (a CLI that matches such a value as text only) a search."""
    monkeypatch.setenv("LFM_COLBERT_MODEL", str(tiny_checkpoint))
    code = main(["search", str(built), "penguins", "--filter", f"{key}={2**70}"])
    assert code in (0, 2)
    if code == 2:
        _one_line_error(capsys)


# -- eval -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_beir(tmp_path_factory):
    root = tmp_path_factory.mktemp("beir")
    (root / "corpus.jsonl").write_text("\n".join(json.dumps({"_id": f"c{i}", "title": "", "text": f"document {i} about topic {i % 3}"}) for i in range(6)))
    (root / "queries.jsonl").write_text("\n".join(json.dumps({"_id": f"q{i}", "text": f"topic {i}"}) for i in range(3)))
    (root / "qrels").mkdir()
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\tc{i}\t1\n" for i in range(3)))
    return root


@pytest.mark.parametrize("args, needle", [
    (["--max-queries", "-3"], "--max-queries"),
    (["--max-queries", "0"], "--max-queries"),
    (["--max-docs", "0"], "--max-docs"),
])
def test_eval_limits_are_checked(tiny_beir, capsys, args, needle):
    """Defect 11: --max-queries -3 gave a traceback; --max-docs 0 / --max-queries 0 ran the full dataset."""
    assert main(["eval", "--model", "bm25", "--dataset", str(tiny_beir), *args]) == 2
    assert _one_line_error(capsys, needle) == ""


def test_eval_output_is_checked_before_the_evaluation(tiny_beir, tmp_path, capsys):
    """Defect 11: an --output DIR that cannot be written ran the whole evaluation, then tracebacked."""
    (tmp_path / "file.txt").write_text("x")
    assert main(["eval", "--model", "bm25", "--dataset", str(tiny_beir), "--output", str(tmp_path / "file.txt" / "out")]) == 2
    assert _one_line_error(capsys, "file.txt") == ""  # no table: the evaluation did not run
    assert main(["eval", "--model", "bm25", "--dataset", str(tiny_beir), "--output", str(tmp_path / "out")]) == 0
    assert json.loads((tmp_path / "out" / "results.json").read_text())
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no temp files left
