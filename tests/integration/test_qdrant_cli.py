"""index / search / info / delete / copy on Qdrant stores from the command line, with a tiny synthetic model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lfm_colbert.cli import main

pytest.importorskip("qdrant_edge", reason="needs lfm-colbert[qdrant-edge]")

CORPUS = Path(__file__).resolve().parents[2] / "examples" / "corpus"


def _search(capsys, store: str, *extra: str) -> list:
    assert main(["search", store, "penguins", "cafe", "-k", "5", "--json", *extra]) == 0
    return [[h["id"] for h in json.loads(line)["hits"]] for line in capsys.readouterr().out.splitlines()]


def test_cli_on_qdrant_stores(tmp_path, tiny_checkpoint, capsys):
    idx, edge, local = str(tmp_path / "idx"), f"qdrant+edge:{tmp_path}/edge", f"qdrant+path:{tmp_path}/local"
    for target in (idx, edge + "?dense=1"):
        assert main(["index", str(CORPUS), "--index", target, "--model", str(tiny_checkpoint), "-q"]) == 0
    out = capsys.readouterr().out
    assert out.count("indexed 41 passages") == 2
    assert main(["index", str(CORPUS), "--index", edge, "--model", str(tiny_checkpoint), "-q"]) == 0
    assert "41 unchanged documents skipped" in capsys.readouterr().out  # reruns skip what is stored

    assert _search(capsys, edge) == _search(capsys, idx)  # the same vectors, the same ranking
    assert _search(capsys, edge, "--filter", "lang=ja,ko") == _search(capsys, idx, "--filter", "lang=ja,ko")
    assert len(_search(capsys, edge + "?prefetch=10")[0]) == 5

    assert main(["info", edge, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["documents"] == 41 and info["storage"]["dense"] and info["storage"]["vectors"]["colbert"]["hnsw_m"] == 0
    assert main(["info", edge]) == 0
    assert "HNSW m=0 (exact scan); dense prefetch vectors" in capsys.readouterr().out

    assert main(["copy", edge, local, "-q"]) == 0
    assert "copied 41 documents" in capsys.readouterr().out
    assert _search(capsys, local) == _search(capsys, idx)
    assert main(["delete", local, "penguins-en", "coffee-ja"]) == 0
    assert "deleted 2 document(s); 39 left" in capsys.readouterr().out


def test_cli_errors_are_one_line(tmp_path, tiny_checkpoint, capsys):
    cases = [
        (["search", f"qdrant+edge:{tmp_path}/none", "q"], "no lfm-colbert collection"),
        (["index", str(CORPUS), "--index", f"qdrant+edge:{tmp_path}/e", "--compress", "2"], "applies to an embedded index"),
        (["info", "qdrant+gopher://x/y"], "unknown store"),
        (["search", "qdrant+http://127.0.0.1:9/docs", "q"], "Connection refused"),
        (["index", str(CORPUS), "--index", str(tmp_path / "i"), "--model", str(tiny_checkpoint), "--shards", str(tmp_path / "s")],
         "--shards needs --ray"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
