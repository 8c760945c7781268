"""The index / search / info / delete commands on the sample corpus, with a tiny synthetic model."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lfm_colbert.cli import main

CORPUS = Path(__file__).resolve().parents[2] / "examples" / "corpus"
QUERIES = CORPUS.parent / "queries.txt"


@pytest.fixture
def built(tmp_path, tiny_checkpoint, capsys):
    index = tmp_path / "idx"
    assert main(["index", str(CORPUS), "--index", str(index), "--model", str(tiny_checkpoint), "-q"]) == 0
    out = capsys.readouterr().out
    assert "indexed" in out
    return index


def test_index_search_info_delete(built, capsys):
    n_lines = sum(1 for line in (CORPUS / "passages.jsonl").read_text().splitlines() if line.strip())
    n_files = sum(1 for _ in (CORPUS / "guides").iterdir())

    assert main(["info", str(built), "--json", "--verify"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["documents"] == n_lines + n_files and info["verified"]
    assert main(["info", str(built)]) == 0  # the text report of the default, exact kind
    out = capsys.readouterr().out
    assert "storage    exact, float16 vectors" in out and f"documents  {n_lines + n_files} " in out

    assert main(["search", str(built), "penguins", "-k", "3", "--json", "--filter", "lang=ja,ko"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 1 and rows[0]["query"] == "penguins"
    hits = rows[0]["hits"]
    assert len(hits) == 3 and all(h["metadata"]["lang"] in ("ja", "ko") for h in hits)
    assert [h["rank"] for h in hits] == [1, 2, 3] and hits[0]["score"] >= hits[-1]["score"]

    assert main(["search", str(built), "--queries", str(QUERIES), "-k", "2"]) == 0
    text = capsys.readouterr().out
    n_queries = sum(1 for q in QUERIES.read_text(encoding="utf-8").splitlines() if q.strip() and not q.startswith("#"))
    assert text.count("\nquery ") + text.startswith("query ") == n_queries

    assert main(["delete", str(built), "penguins-en", "coffee-en"]) == 0
    assert "deleted 2" in capsys.readouterr().out
    assert main(["search", str(built), "penguins", "-k", "100", "--json"]) == 0
    ids = {h["id"] for h in json.loads(capsys.readouterr().out)["hits"]}
    assert "penguins-en" not in ids and "penguins-es" in ids


def test_reindexing_replaces_instead_of_duplicating(built, tiny_checkpoint, capsys):
    main(["info", str(built), "--json"])
    before = json.loads(capsys.readouterr().out)["documents"]
    assert main(["index", str(CORPUS), "--index", str(built), "-q"]) == 0  # model taken from the index
    capsys.readouterr()
    main(["info", str(built), "--json"])
    assert json.loads(capsys.readouterr().out)["documents"] == before


def test_reindexing_encodes_only_what_changed(tmp_path, tiny_checkpoint, capsys):
    corpus = tmp_path / "corpus"
    shutil.copytree(CORPUS, corpus)
    index = tmp_path / "idx"
    args = ["index", str(corpus), "--index", str(index), "--model", str(tiny_checkpoint), "-q"]
    assert main(args) == 0
    n_docs = int(capsys.readouterr().out.split(" passages from ")[1].split()[0])

    def info():
        assert main(["info", str(index), "--json"]) == 0
        return json.loads(capsys.readouterr().out)

    before = info()

    assert main(args) == 0  # nothing changed: nothing encoded, nothing written
    assert f"indexed 0 passages from 0 documents into {index}; {n_docs} unchanged documents skipped" in capsys.readouterr().out
    assert info()["segments"] == before["segments"] and info()["documents"] == before["documents"]

    guide = next((corpus / "guides").iterdir())
    guide.write_text(guide.read_text() + "\nZebras sleep standing up on the savanna.\n")
    lines = (corpus / "passages.jsonl").read_text().splitlines()
    row = json.loads(lines[0])
    row["lang"] = "xx"  # metadata only
    (corpus / "passages.jsonl").write_text("\n".join([json.dumps(row, ensure_ascii=False)] + lines[1:]) + "\n")
    assert main(args) == 0
    out = capsys.readouterr().out  # the metadata-only change is copied from its stored vectors
    assert f"1 of them copied from stored vectors, not encoded) from 2 documents into {index}; {n_docs - 2} unchanged documents skipped" in out
    assert info()["documents"] == before["documents"]
    assert main(["search", str(index), "zebras", "-k", "1", "--json", "--filter", f"source=corpus/guides/{guide.name}"]) == 0
    assert "Zebras sleep" in json.loads(capsys.readouterr().out)["hits"][0]["text"]
    assert main(["search", str(index), "x", "-k", "5", "--json", "--filter", "lang=xx"]) == 0
    assert [h["id"] for h in json.loads(capsys.readouterr().out)["hits"]] == [row["id"]]

    assert main(args + ["--force"]) == 0
    assert f"from {n_docs} documents into {index} (" in capsys.readouterr().out


def test_an_interrupted_index_run_continues_where_it_stopped(built, tmp_path, tiny_checkpoint, capsys, monkeypatch):
    from lfm_colbert.index import Index

    index = tmp_path / "resumed"
    args = ["index", str(CORPUS), "--index", str(index), "--model", str(tiny_checkpoint), "-q", "--commit-every", "5"]
    real_add, calls = Index.add_vectors, []

    def add_then_ctrl_c(self, *a, **kw):
        calls.append(len(a[0]))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_add(self, *a, **kw)

    monkeypatch.setattr(Index, "add_vectors", add_then_ctrl_c)
    assert main(args) == 130
    saved = sum(calls[:2])
    assert f"interrupted: {saved} of " in capsys.readouterr().err and all(n >= 5 for n in calls[:2])
    monkeypatch.setattr(Index, "add_vectors", real_add)
    assert main(["info", str(index), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["documents"] == saved  # two commits kept, nothing half-written

    assert main(args) == 0
    out = capsys.readouterr().out
    assert "unchanged documents skipped" in out
    for idx in (built, index):  # the same documents as one run in one commit
        assert main(["search", str(idx), "solar panels at night", "-k", "41", "--json"]) == 0
    one_go, resumed = ({h["id"]: h["score"] for h in json.loads(line)["hits"]} for line in capsys.readouterr().out.splitlines())
    # Same documents, each once. Scores differ a little: LFM2.5's centred conv sees batch padding (as
    # in PyLate), and runs of 5 documents batch them differently.
    assert resumed.keys() == one_go.keys() and len(one_go) == 41


@pytest.mark.parametrize(
    "argv, message",
    [
        (["search", "{idx}", "x", "-k", "0"], "-k must be a positive integer"),
        (["search", "{idx}", "x", "--filter", "lang"], "use KEY=VALUE"),
        (["search", "{idx}"], "at least one query"),
        (["delete", "{idx}", "no-such-id"], "not in the index"),
        (["info", "{missing}"], "no lfm-colbert index"),
        (["index", "{missing}", "--index", "{idx}"], "no such file"),
        (["index", str(CORPUS), "--index", "{idx}", "--commit-every", "0"], "--commit-every must be a positive"),
        (["index", str(CORPUS), "--index", "{idx}", "--batch-size", "0"], "--batch-size must be a positive"),
        (["index", str(CORPUS), "--index", "{idx}", "--max-tokens", "0"], "--max-tokens must be a positive"),
        (["index", str(CORPUS), "--index", "{idx}", "--max-tokens", "100000", "--force"], "more than a document of this model holds"),
        (["index", str(CORPUS), "--index", "{idx}", "--train-tokens", "100"], "train_tokens applies to compressed"),
        (["search", "{idx}", "penguins", "--device", "gpu0"], "unknown device 'gpu0'"),
        (["index", str(CORPUS), "--index", "{idx}", "--device", "tpu"], "unknown device 'tpu'"),
    ],
)
def test_bad_input_is_one_line_error_and_exit_2(built, tmp_path, argv, message, capsys):
    argv = [a.format(idx=built, missing=tmp_path / "missing") for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_help_teaches():
    out = subprocess.run([sys.executable, "-m", "lfm_colbert", "index", "--help"], capture_output=True, text=True).stdout
    assert "--compress" in out and "examples:" in out and ".jsonl" in out


def test_stray_files_in_a_folder_are_skipped_with_a_one_line_warning(tmp_path, tiny_checkpoint):
    """A subprocess, as users run it: pytest would capture the warning before it is printed."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "notes.txt").write_bytes(b"caf\xe9 au lait")  # Latin-1, not UTF-8
    (docs / "faq.jsonl").write_bytes(b"\xef\xbb\xbf" + json.dumps({"id": "bom", "text": "penguins huddle"}).encode())
    env = {**os.environ, "LFM_COLBERT_MODEL": str(tiny_checkpoint)}
    run = subprocess.run([sys.executable, "-m", "lfm_colbert", "index", str(docs), "--index", str(tmp_path / "i"), "-q"],
                         capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    assert "indexed 1 passages from 1 documents" in run.stdout
    assert run.stderr.strip() == f"warning: {docs.as_posix()}/notes.txt: not UTF-8 text (invalid continuation byte at byte 3); skipped"


def test_compressed_rescored_index_matches_exact_ranking(built, tmp_path, tiny_checkpoint, capsys):
    """--compress 2 --rescore: the sample corpus is small enough that every document is a candidate,
    so the ranking (and, up to float16, the scores) must be the exact index's."""
    rescored = tmp_path / "rescored"
    args = ["index", str(CORPUS), "--index", str(rescored), "--model", str(tiny_checkpoint), "-q"]
    assert main(args + ["--rescore"]) != 0  # rescore without compression: a clear error
    assert "rescore" in capsys.readouterr().err
    assert main(args + ["--compress", "2", "--rescore"]) == 0
    assert "exact until it holds 262,144 tokens" in capsys.readouterr().out  # too small to train a codec yet
    assert main(["info", str(rescored)]) == 0
    assert "2-bit residuals once it holds 262,144 tokens" in capsys.readouterr().out
    shutil.rmtree(rescored)
    assert main(args + ["--compress", "2", "--rescore", "--train-tokens", "1"]) == 0
    assert "rescored on float16" in capsys.readouterr().out
    assert main(["info", str(rescored)]) == 0
    assert "centroids fitted to" in capsys.readouterr().out
    results = []
    for index in (built, rescored):
        assert main(["search", str(index), "¿Dónde viven los pingüinos?", "-k", "5", "--json"]) == 0
        results.append(json.loads(capsys.readouterr().out)["hits"])
    assert [h["id"] for h in results[0]] == [h["id"] for h in results[1]]
    exact_scores, rescored_scores = ([h["score"] for h in r] for r in results)
    assert rescored_scores == pytest.approx(exact_scores, rel=1e-2)


def test_results_in_any_script_print_under_a_non_utf8_locale(built, tiny_checkpoint):
    """A terminal or pipe that cannot encode Japanese (as Windows pipes in the ANSI code page) gets
    escapes, not a UnicodeEncodeError halfway through the results."""
    env = {**os.environ, "PYTHONIOENCODING": "ascii", "LFM_COLBERT_MODEL": str(tiny_checkpoint)}
    code = "import sys; from lfm_colbert.cli import main; sys.exit(main(sys.argv[1:]))"
    out = subprocess.run([sys.executable, "-c", code, "search", str(built), "ペンギン", "-k", "41", "--filter", "lang=ja"],
                         capture_output=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr.decode("ascii", "replace")
    assert b"\\u30da" in out.stdout  # ペ, escaped
