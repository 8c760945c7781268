"""`lfm-colbert index` on HTML, PDF, CSV, TSV and Parquet files made in the test: each searchable, each
keeping its source and offsets (page, row) in metadata, table columns chosen on the command line."""

from __future__ import annotations

import json

import pytest

from lfm_colbert.cli import main


def test_every_format_through_the_cli(tmp_path, tiny_checkpoint, make_pdf, capsys):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "page.html").write_text("<html><head><title>Penguins</title><script>track()</script></head><body>"
                                    "<nav>Home About</nav><p>Penguins dive for krill.</p></body></html>", encoding="utf-8")
    make_pdf(docs / "paper.pdf", ["Volcanoes erupt lava.", "Magma rises from the mantle."])
    (docs / "items.csv").write_text("sku,name,body,year\nA1,Plush,A soft penguin toy,2021\nB2,Mug,A mug for coffee,2019\n",
                                    encoding="utf-8")
    (docs / "notes.tsv").write_text("sku\tname\tbody\tyear\nC3\tTea\tGreen tea leaves\t2020\n", encoding="utf-8")
    pq.write_table(pa.table({"sku": ["D4"], "name": ["Map"], "body": ["A map of Iceland"], "year": [2018]}), docs / "t.parquet")
    index = tmp_path / "idx"
    argv = ["index", str(docs), "--index", str(index), "--model", str(tiny_checkpoint), "-q",
            "--id-column", "sku", "--text-column", "name,body"]
    assert main(argv) == 0
    capsys.readouterr()
    assert main(["list", str(index), "--json"]) == 0
    rows = {d["id"]: d for d in map(json.loads, capsys.readouterr().out.splitlines())}
    assert set(rows) == {"A1", "B2", "C3", "D4", "docs/page.html", "docs/paper.pdf#0", "docs/paper.pdf#1"}
    assert rows["docs/page.html"]["text"] == "Penguins\n\nPenguins dive for krill."
    assert rows["docs/page.html"]["metadata"]["title"] == "Penguins"
    assert rows["docs/paper.pdf#1"]["text"] == "Magma rises from the mantle."
    assert rows["docs/paper.pdf#1"]["metadata"]["page"] == 2 and rows["docs/paper.pdf#1"]["parent"] == "docs/paper.pdf"
    assert rows["B2"]["text"] == "Mug\n\nA mug for coffee"
    assert rows["B2"]["metadata"] == {"year": 2019, "source": "docs/items.csv", "row": 2, "passage": 0, "start": 0, "end": 21}
    assert rows["C3"]["metadata"]["source"] == "docs/notes.tsv" and rows["D4"]["metadata"]["year"] == 2018

    assert main(["search", str(index), "penguin", "--filter", "year>=2020", "--filter", "source=docs/items.csv,docs/notes.tsv",
                 "--json", "-k", "5"]) == 0
    assert {h["id"] for h in json.loads(capsys.readouterr().out)["hits"]} == {"A1", "C3"}
    assert main(["search", str(index), "magma", "--filter", "page=2", "--group-by-document", "--json"]) == 0
    [hit] = json.loads(capsys.readouterr().out)["hits"]
    assert hit["id"] == "docs/paper.pdf" and hit["passage_id"] == "docs/paper.pdf#1"

    # A row inserted at the top of the CSV moves the others: their `row` is rewritten, nothing re-encoded.
    (docs / "items.csv").write_text("sku,name,body,year\nZ0,Hat,A wool hat,2022\nA1,Plush,A soft penguin toy,2021\n"
                                    "B2,Mug,A mug for coffee,2019\n", encoding="utf-8")
    assert main([*argv, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["encoded"], summary["reused"]) == (1, 2)
