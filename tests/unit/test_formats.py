"""HTML, PDF, CSV / TSV and Parquet files, made in the test, read into documents with their source and
offsets (page, row); passages never cross a PDF page; a missing extra is a one-line error naming it."""

from __future__ import annotations

import json

import pytest

from lfm_colbert.errors import InputError
from lfm_colbert.ingest import TableColumns, read_documents, split_passages

PAGE = """<!doctype html><html><head><title>Penguin facts</title><script>var tracking = 1;</script>
<style>p { color: red }</style></head><body>
<nav><a href="/">Home</a> <a href="/about">About us</a></nav><header>Site banner</header>
<main><h1>Penguins</h1><p>Penguins live   <b>in the</b>
southern hemisphere.</p><ul><li>Emperor</li><li>Adélie</li></ul>
<div role="navigation">Next page</div><p hidden>hidden text</p><table><tr><td>a</td><td>b</td></tr></table></main>
<aside>Related links</aside><footer>© 2024 Example</footer><noscript>Enable JavaScript</noscript></body></html>"""


def test_html_keeps_the_visible_text_and_drops_navigation_and_scripts(tmp_path):
    (tmp_path / "page.html").write_text(PAGE, encoding="utf-8")
    [doc] = read_documents([tmp_path / "page.html"])
    assert doc.id == "page.html" and doc.metadata == {"source": "page.html", "title": "Penguin facts"}
    assert doc.text == "Penguin facts\n\nPenguins\nPenguins live in the southern hemisphere.\nEmperor\nAdélie\na b"
    for junk in ("tracking", "color", "Home", "About us", "Site banner", "Next page", "hidden text", "Related", "2024", "JavaScript"):
        assert junk not in doc.text


def test_html_in_another_encoding_is_read_by_its_meta_charset(tmp_path):
    page = '<html><head><meta charset="windows-1252"></head><body><p>Caf\xe9 cr\xe8me</p></body></html>'
    (tmp_path / "old.htm").write_bytes(page.encode("cp1252"))
    [doc] = read_documents([tmp_path / "old.htm"])
    assert doc.text == "Café crème"


def test_pdf_is_one_document_whose_passages_stay_inside_pages(tmp_path, make_pdf):
    words = " ".join(f"word{i}" for i in range(40))
    make_pdf(tmp_path / "paper.pdf", ["Penguins huddle on the ice.", "", words])
    [doc] = read_documents([tmp_path / "paper.pdf"])
    assert doc.id == "paper.pdf" and doc.metadata == {"source": "paper.pdf"}
    assert doc.text.startswith("Penguins huddle on the ice.\n\nword0")
    passages = list(split_passages([doc], max_tokens=16, overlap=4))
    assert passages[0].text == "Penguins huddle on the ice." and passages[0].metadata["page"] == 1
    assert {p.metadata["page"] for p in passages[1:]} == {3}  # page 2 is blank
    assert all(p.text == doc.text[p.metadata["start"] : p.metadata["end"]] for p in passages)
    assert [p.id for p in passages] == [f"paper.pdf#{i}" for i in range(len(passages))]


def test_a_pdf_without_text_or_broken_is_said_so(tmp_path, make_pdf):
    make_pdf(tmp_path / "scan.pdf", [""])
    with pytest.warns(UserWarning, match="no extractable text"):
        assert list(read_documents([tmp_path / "scan.pdf"])) == []
    (tmp_path / "bad.pdf").write_bytes(b"%PDF-1.4 not really")
    with pytest.raises(InputError, match="bad.pdf: not a readable PDF"):
        list(read_documents([tmp_path / "bad.pdf"]))


def test_csv_and_tsv_rows_with_chosen_columns(tmp_path):
    (tmp_path / "items.csv").write_text(
        "sku,name,description,year,zip,lang\n"
        'A1,Penguin plush,"Soft, grey, 30 cm",2021,00501,en\n'
        "B2,Pinguin,Weich und grau,2019,10115,de\n"
        "\n"
        "C3,,,2020,,en\n", encoding="utf-8")
    with pytest.warns(UserWarning, match="items.csv, row 4 has an empty text"):
        docs = list(read_documents([tmp_path / "items.csv"], columns=TableColumns("sku", ["name", "description"], None)))
    assert [d.id for d in docs] == ["A1", "B2"]
    assert docs[0].text == "Penguin plush\n\nSoft, grey, 30 cm"
    # year holds numbers only: numbers; zip has a leading zero: text; row counts data rows from 1
    assert docs[0].metadata == {"year": 2021, "zip": "00501", "lang": "en", "source": "items.csv", "row": 1}
    assert docs[1].metadata["row"] == 2
    with pytest.warns(UserWarning, match="row 4 has an empty text"):
        only = list(read_documents([tmp_path / "items.csv"], columns=TableColumns(None, ["name"], ["lang"])))
    assert only[0].metadata == {"lang": "en", "source": "items.csv", "row": 1} and only[0].id.startswith("items.csv:")

    (tmp_path / "t.tsv").write_text("id\ttext\tscore\nx\thello world\t1.5\n", encoding="utf-8")
    [doc] = read_documents([tmp_path / "t.tsv"])
    assert (doc.id, doc.text, doc.metadata) == ("x", "hello world", {"score": 1.5, "source": "t.tsv", "row": 1})


@pytest.mark.parametrize(
    "content, columns, message",
    [
        ("a,b\n1,2\n", TableColumns(), "no column 'text' \\(columns: a, b\\)"),
        ("id,text\n1,x,extra\n", TableColumns(), "row 1: 3 fields where the header has 2"),
        ("text,text\nx,y\n", TableColumns(), "distinct, non-empty column names"),
        ("id,text\n1,x\n", TableColumns(metadata=["nope"]), "no column 'nope'"),
    ],
)
def test_table_errors_name_the_file_and_the_choice(tmp_path, content, columns, message):
    (tmp_path / "bad.csv").write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match=message):
        list(read_documents([tmp_path / "bad.csv"], columns=columns))


def test_parquet_keeps_its_types(tmp_path):
    import datetime

    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.table({"id": ["p1", "p2"], "text": ["Penguins dive.", "Volcanoes erupt."], "year": [2020, 2021],
                      "published": [datetime.date(2020, 1, 2), datetime.date(2021, 3, 4)], "tags": [["bird"], []]})
    pq.write_table(table, tmp_path / "data.parquet")
    docs = list(read_documents([tmp_path / "data.parquet"]))
    assert [d.id for d in docs] == ["p1", "p2"]
    assert docs[0].metadata == {"year": 2020, "published": "2020-01-02", "tags": ["bird"], "source": "data.parquet", "row": 1}
    assert json.dumps(docs[1].metadata)  # JSON all the way down


def test_a_missing_extra_names_it_and_a_folder_skips_the_file(tmp_path, monkeypatch, make_pdf):
    import sys

    make_pdf(tmp_path / "a.pdf", ["text"])
    (tmp_path / "b.txt").write_text("plain", encoding="utf-8")
    monkeypatch.setitem(sys.modules, "pypdf", None)  # as if not installed: importing it raises ImportError
    with pytest.raises(InputError, match=r"reading \.pdf files needs the optional package 'pypdf': pip install 'lfm-colbert\[pdf\]'"):
        list(read_documents([tmp_path / "a.pdf"]))
    skipped: set[str] = set()
    with pytest.warns(UserWarning, match="needs the optional package 'pypdf'.*; skipped"):
        docs = list(read_documents([tmp_path], skipped=skipped))
    assert [d.id for d in docs] == [f"{tmp_path.name}/b.txt"] and skipped == {f"{tmp_path.name}/a.pdf"}
