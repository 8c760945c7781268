"""search / rerank / get / list / export through the real CLI: every filter form and its errors,
group-by-document, standard input, query ids, TREC runs read back by pytrec_eval, data back out."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from lfm_colbert.cli import main

LONG = " ".join(f"Penguins of colony {i} huddle on the ice and dive for krill in cold water." for i in range(12))
ROWS = [
    {"id": "en-2019", "text": "Penguins live in the southern hemisphere.", "lang": "en", "year": 2019, "date": "2019-03-01", "tags": ["bird", "cold"]},
    {"id": "de-2020", "text": "Pinguine leben auf der Südhalbkugel.", "lang": "de", "year": 2020, "date": "2020-07-15", "tags": ["bird"]},
    {"id": "fr-2021", "text": "Les volcans crachent de la lave.", "lang": "fr", "year": 2021, "date": "2021-01-02", "title": "Volcans"},
    {"id": "es-2023", "text": "El café crece en los trópicos.", "lang": "es", "year": 2023, "date": "2023-11-30", "tags": []},
]


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_checkpoint):
    root = tmp_path_factory.mktemp("search")
    (root / "docs").mkdir()
    (root / "docs" / "long.md").write_text(LONG, encoding="utf-8")
    (root / "docs" / "rows.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ROWS), encoding="utf-8")
    index = root / "idx"
    assert main(["index", str(root / "docs"), "--index", str(index), "--model", str(tiny_checkpoint), "--max-tokens", "64", "-q"]) == 0
    return index


def _out(capsys, *argv, code=0):
    assert main([str(a) for a in argv]) == code
    captured = capsys.readouterr()
    return captured.out if code == 0 else captured.err


def _ids(capsys, index, *filters, cmd="search"):
    args = [a for f in filters for a in ("--filter", f)]
    if cmd == "search":
        out = _out(capsys, "search", index, "penguins", "-k", "50", "--json", *args)
        return {h["id"] for h in json.loads(out)["hits"]}
    return {json.loads(line)["id"] for line in _out(capsys, "list", index, "--json", *args).splitlines()}


@pytest.mark.parametrize(
    "filters, want",
    [
        (["lang=en"], {"en-2019"}),
        (["lang=en,de"], {"en-2019", "de-2020"}),
        (["lang!=en", "source=docs/rows.jsonl"], {"de-2020", "fr-2021", "es-2023"}),
        (["year>=2020"], {"de-2020", "fr-2021", "es-2023"}),
        (["year>2019", "year<2023"], {"de-2020", "fr-2021"}),
        (["date<2020-01-01"], {"en-2019"}),
        (["date>=2021-01-01"], {"fr-2021", "es-2023"}),
        (["title=*"], {"fr-2021"}),
        (["tags=bird", "tags=cold"], {"en-2019"}),
        (["lang=fr OR year<2020"], {"en-2019", "fr-2021"}),
        (["(lang=de OR lang=es) AND NOT year>2022"], {"de-2020"}),
        (["lang=en", "lang=de"], set()),  # repeated keys: all must hold
    ],
)
def test_every_filter_form_through_list(built, capsys, filters, want):
    assert _ids(capsys, built, *filters, cmd="list") == want


@pytest.mark.parametrize("filters, want", [(["year>2019", "year<2023"], {"de-2020", "fr-2021"}),
                                           (["(lang=de OR lang=es) AND NOT year>2022"], {"de-2020"})])
def test_filters_through_search(built, capsys, filters, want):
    assert _ids(capsys, built, *filters) == want


@pytest.mark.parametrize(
    "filters, message",
    [
        (["lang==en"], "'==' is not an operator"),
        (["lang="], "no value after 'lang='"),
        (["lnag=en"], "no document has the metadata key 'lnag'; keys (documents): "),
        (["year>=2020,2021"], "takes one value"),
        (["lang=en AND"], "expected a metadata key"),
    ],
)
def test_filter_errors_are_one_line(built, capsys, filters, message):
    for cmd in (["search", built, "x"], ["list", built]) if "lnag" in message else (["list", built],):
        err = _out(capsys, *cmd, *[a for f in filters for a in ("--filter", f)], code=2)
        assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1


def test_a_filter_matching_nothing_says_so(built, capsys):
    assert main(["search", str(built), "penguins", "--filter", "year>3000"]) == 0
    captured = capsys.readouterr()
    assert "(no results)" in captured.out and "no document matches the filter" in captured.err


def test_group_by_document_collapses_passages(built, capsys):
    hits = json.loads(_out(capsys, "search", built, "penguins on the ice", "-k", "50", "--json"))["hits"]
    long_passages = [h for h in hits if h["id"].startswith("docs/long.md#")]
    assert len(long_passages) > 3  # the long file was split
    grouped = json.loads(_out(capsys, "search", built, "penguins on the ice", "-k", "3", "--json", "--group-by-document"))["hits"]
    ids = [h["id"] for h in grouped]
    assert len(ids) == 3 == len(set(ids)) and "docs/long.md#0" not in ids
    best_long = max(long_passages, key=lambda h: h["score"])
    if "docs/long.md" in ids:
        g = grouped[ids.index("docs/long.md")]
        assert g["passage_id"] == best_long["id"] and g["score"] == pytest.approx(best_long["score"])
        assert g["passages"] == len(long_passages) or g["passages"] >= 1
    everything = json.loads(_out(capsys, "search", built, "x", "-k", "50", "--json", "--group-by-document"))["hits"]
    assert {h["id"] for h in everything} == {"docs/long.md"} | {r["id"] for r in ROWS}


def test_queries_from_files_and_stdin_with_ids_and_trec_read_by_pytrec_eval(built, tmp_path, capsys, monkeypatch):
    pytrec_eval = pytest.importorskip("pytrec_eval")
    qfile = tmp_path / "queries.tsv"
    qfile.write_text("# a comment line\nq1\tpenguins in the south\n\nq2\tvolcanoes and lava\n#q3\tnot a query\n", encoding="utf-8")
    run = _out(capsys, "search", built, "--queries", qfile, "--format", "trec", "-k", "3", "--group-by-document")
    lines = run.splitlines()
    assert len(lines) == 6 and {line.split()[0] for line in lines} == {"q1", "q2"}
    run_file = tmp_path / "run.trec"
    run_file.write_text(run, encoding="utf-8")
    with open(run_file) as f:
        parsed = pytrec_eval.parse_run(f)
    assert set(parsed) == {"q1", "q2"} and all(len(docs) == 3 for docs in parsed.values())
    qrels = {"q1": {"en-2019": 1, "de-2020": 1}, "q2": {"fr-2021": 1}}
    scores = pytrec_eval.RelevanceEvaluator(qrels, {"recall.3"}).evaluate(parsed)
    assert set(scores) == {"q1", "q2"} and all(0 <= s["recall_3"] <= 1 for s in scores.values())

    monkeypatch.setattr("sys.stdin", io.StringIO('{"_id": "a", "text": "penguins"}\n{"_id": "b", "text": "café"}\n'))
    rows = [json.loads(line) for line in _out(capsys, "search", built, "-", "-k", "2", "--json").splitlines()]
    assert [r["query_id"] for r in rows] == ["a", "b"] and all(len(r["hits"]) == 2 for r in rows)
    monkeypatch.setattr("sys.stdin", io.StringIO("first query\n\nsecond query\n"))
    rows = [json.loads(line) for line in _out(capsys, "search", built, "--queries", "-", "-k", "1", "--json").splitlines()]
    assert [(r["query_id"], r["query"]) for r in rows] == [("1", "first query"), ("3", "second query")]
    qfile.write_text("q1\ta\nq1\tb\n", encoding="utf-8")
    assert "query id 'q1' is given twice" in _out(capsys, "search", built, "--queries", qfile, code=2)


def test_a_long_query_is_not_echoed_in_full(built, capsys):
    query = "penguins " * 12_000
    out = _out(capsys, "search", built, query, "-k", "1")
    first = out.splitlines()[0]
    assert len(first) < 300 and "(108,000 characters)" in first


def test_rerank_from_a_file_and_from_stdin(tiny_checkpoint, tmp_path, capsys, monkeypatch):
    docs = tmp_path / "docs.txt"
    docs.write_text("Penguins live in the south.\n\nCats sleep a lot.\nVolcanoes erupt.\n", encoding="utf-8")
    out = _out(capsys, "rerank", "where do penguins live?", docs, "--model", tiny_checkpoint, "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 1 and sorted(h["id"] for h in rows[0]["hits"]) == ["1", "3", "4"]
    scores = [h["score"] for h in rows[0]["hits"]]
    assert scores == sorted(scores, reverse=True)
    monkeypatch.setattr("sys.stdin", io.StringIO('{"id": "p", "text": "Penguins."}\n{"id": "c", "text": "Cats."}\n'))
    out = _out(capsys, "rerank", "penguins", "-", "--model", tiny_checkpoint, "--format", "trec", "--query-id", "q9", "-k", "1")
    assert len(out.splitlines()) == 1 and out.split()[:2] == ["q9", "Q0"] and out.split()[2] in {"p", "c"}
    assert "not both" in _out(capsys, "rerank", "-", "-", code=2)


def test_get_list_and_export_give_the_data_back(built, tmp_path, tiny_checkpoint, capsys):
    doc = json.loads(_out(capsys, "get", built, "de-2020", "--json"))
    assert doc["text"] == ROWS[1]["text"] and doc["metadata"]["lang"] == "de" and doc["metadata"]["year"] == 2020
    passages = [json.loads(line) for line in _out(capsys, "get", built, "docs/long.md", "--json").splitlines()]
    assert len(passages) > 3 and [p["metadata"]["passage"] for p in passages] == list(range(len(passages)))
    assert all(p["parent"] == "docs/long.md" for p in passages)
    assert "not in the index: 'nope'" in _out(capsys, "get", built, "de-2020", "nope", code=2)
    assert "metadata  {" in _out(capsys, "get", built, "fr-2021")

    listed = _out(capsys, "list", built).splitlines()
    assert listed[0].startswith("de-2020\t") and len(listed) == 4 + len(passages)
    page = _out(capsys, "list", built, "--limit", "2", "--after", "de-2020").splitlines()
    assert [line.split("\t")[0] for line in page] == [line.split("\t")[0] for line in listed[1:3]]
    keys = dict(line.split("\t") for line in _out(capsys, "list", built, "--keys").splitlines())
    assert keys["lang"] == "4" and keys["source"] == str(len(listed))

    out = tmp_path / "out.jsonl"
    _out(capsys, "export", built, "--output", out, "--vectors", tmp_path / "vec")
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in rows] == [line.split("\t")[0] for line in listed]
    vectors, doclens = np.load(tmp_path / "vec" / "vectors.npy"), np.load(tmp_path / "vec" / "doclens.npy")
    assert json.loads((tmp_path / "vec" / "ids.json").read_text()) == [r["id"] for r in rows]
    assert vectors.dtype == np.float16 and vectors.shape[0] == doclens.sum() and len(doclens) == len(rows)
    norms = np.linalg.norm(vectors.astype(np.float32), axis=1)
    assert np.allclose(norms, 1, atol=1e-2)
    assert "exists" in _out(capsys, "export", built, "--output", out, code=2)  # never overwritten silently
    assert _out(capsys, "export", built, "--filter", "lang=de").strip() == json.dumps(doc, ensure_ascii=False)
    # Export -> index again gives the same documents.
    again = tmp_path / "again"
    assert main(["index", str(out), "--index", str(again), "-q", "--max-tokens", "64", "--model", str(tiny_checkpoint)]) == 0
    capsys.readouterr()
    assert _ids(capsys, again, cmd="list") == {r["id"] for r in rows}
