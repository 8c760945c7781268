"""`lfm-colbert search --mode/--alpha` and `lfm-colbert index --rebuild-lexical` through the real CLI."""

from __future__ import annotations

import json

import pytest

from lfm_colbert.cli import main

ROWS = [
    {"id": "p1", "text": "Penguins live in the southern hemisphere.", "lang": "en"},
    {"id": "p2", "text": "Pinguine leben auf der Südhalbkugel.", "lang": "de"},
    {"id": "v1", "text": "Volcanoes erupt with lava BRCA1.", "lang": "en"},
    {"id": "z1", "text": "企鹅生活在南半球。", "lang": "zh"},
]


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_checkpoint):
    root = tmp_path_factory.mktemp("hybrid-cli")
    (root / "rows.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ROWS), encoding="utf-8")
    index = root / "idx"
    assert main(["index", str(root / "rows.jsonl"), "--index", str(index), "--model", str(tiny_checkpoint), "-q"]) == 0
    return index


def _hits(capsys, *argv, code=0):
    assert main([str(a) for a in argv]) == code
    out = capsys.readouterr()
    if code:
        return out.err
    return [h["id"] for h in json.loads(out.out.splitlines()[0])["hits"]]


def test_search_modes(built, capsys):
    assert _hits(capsys, "search", built, "BRCA1", "--mode", "lexical", "--json") == ["v1"]
    assert _hits(capsys, "search", built, "企鹅", "--mode", "lexical", "--json") == ["z1"]
    assert _hits(capsys, "search", built, "penguins", "--mode", "lexical", "--json", "--filter", "lang=de") == []
    hybrid = _hits(capsys, "search", built, "BRCA1", "--mode", "hybrid", "--json", "-k", "4")
    assert hybrid[0] == "v1" and sorted(hybrid) == ["p1", "p2", "v1", "z1"]
    assert _hits(capsys, "search", built, "BRCA1", "--mode", "hybrid", "--alpha", "0", "--json", "-k", "1") == ["v1"]
    semantic = _hits(capsys, "search", built, "BRCA1", "--json", "-k", "4")
    assert _hits(capsys, "search", built, "BRCA1", "--mode", "hybrid", "--alpha", "1", "--json", "-k", "4") == semantic
    hybrid = _hits(capsys, "search", built, "penguins", "--mode", "hybrid", "--json", "-k", "4", "--filter", "lang=en")
    assert sorted(hybrid) == ["p1", "v1"]


def test_search_mode_errors(built, capsys):
    for argv, says in ((["--alpha", "0.5"], "--alpha"), (["--mode", "hybrid", "--alpha", "2"], "alpha"),
                       (["--mode", "lexical", "--group-by-document"], "group-by-document")):
        err = _hits(capsys, "search", built, "penguins", *argv, code=2)
        assert "error:" in err and says in err and "Traceback" not in err
    assert "invalid choice" in _hits(capsys, "search", built, "penguins", "--mode", "keyword", code=2)


def test_rebuild_lexical(built, tmp_path, capsys, drop_lexical):
    import shutil

    path = tmp_path / "old"
    shutil.copytree(built, path)
    drop_lexical(path)
    err = _hits(capsys, "search", path, "BRCA1", "--mode", "lexical", code=2)
    assert "--rebuild-lexical" in err
    assert main(["info", str(path)]) == 0
    assert "keywords   none yet" in capsys.readouterr().out
    assert main(["index", "--index", str(path), "--rebuild-lexical"]) == 0
    assert "4 stored texts" in capsys.readouterr().err
    assert _hits(capsys, "search", path, "BRCA1", "--mode", "lexical", "--json") == ["v1"]
    assert main(["info", str(path)]) == 0
    assert "keywords   BM25 k1=1.5 b=0.75" in capsys.readouterr().out
    err = _hits(capsys, "index", "--index", path, code=2)
    assert "SOURCE" in err
