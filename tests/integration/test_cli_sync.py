"""`lfm-colbert index` keeps an index in step with its sources: ids independent of path spelling, a
line inserted into a .jsonl costs one document, --sync, indexes with the old id scheme, the model
found again, and token pooling."""

from __future__ import annotations

import json
import shutil

import pytest

from lfm_colbert.cli import main


def _corpus(root):
    (root / "corpus" / "notes").mkdir(parents=True)
    (root / "corpus" / "notes" / "a.md").write_text("Penguins huddle together to stay warm.", encoding="utf-8")
    (root / "corpus" / "notes" / "b.txt").write_text("Volcanoes erupt when magma rises.", encoding="utf-8")
    rows = [{"text": "Coffee grows in the tropics.", "lang": "en"}, {"id": "tea", "text": "Tea is a leaf.", "lang": "en"},
            {"text": "Kaffee wächst in den Tropen.", "lang": "de"}]
    (root / "corpus" / "faq.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return root / "corpus"


def _run(capsys, *argv):
    code = main([*map(str, argv), *(["-q"] if argv[0] == "index" else [])])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def _ids(capsys, index):
    assert main(["list", str(index), "--json"]) == 0
    return sorted(json.loads(line)["id"] for line in capsys.readouterr().out.splitlines())


def test_path_spelling_does_not_duplicate(tmp_path, tiny_checkpoint, capsys, monkeypatch):
    corpus = _corpus(tmp_path / "work")
    index = tmp_path / "idx"
    monkeypatch.chdir(tmp_path / "work")
    first = _run(capsys, "index", "corpus", "--index", index, "--model", tiny_checkpoint)
    assert "indexed 5 passages from 5 documents" in first
    ids = _ids(capsys, index)
    assert "corpus/notes/a.md" in ids and "tea" in ids and len(ids) == 5
    for spelling, cwd in ((corpus.resolve(), tmp_path / "work"), ("work/corpus", tmp_path), (".", corpus)):
        monkeypatch.chdir(cwd)
        out = _run(capsys, "index", spelling, "--index", index)
        assert "indexed 0 passages from 0 documents" in out and "5 unchanged documents skipped" in out, spelling
        assert "no longer in the sources" not in out
    assert _ids(capsys, index) == ids


def test_a_line_inserted_at_the_top_encodes_one_document_and_sync_removes_what_vanished(tmp_path, tiny_checkpoint, capsys):
    corpus = _corpus(tmp_path)
    index = tmp_path / "idx"
    args = ["index", corpus, "--index", index, "--model", tiny_checkpoint]
    _run(capsys, *args)
    faq = corpus / "faq.jsonl"
    faq.write_text(json.dumps({"text": "Cocoa beans ferment before drying."}) + "\n" + faq.read_text(encoding="utf-8"), encoding="utf-8")
    out = _run(capsys, *args, "--json")
    summary = json.loads(out)
    assert summary["encoded"] == 1 and summary["changed_documents"] == 1 and summary["unchanged_documents"] == 5

    (corpus / "notes" / "b.txt").unlink()  # a file and a line vanish
    faq.write_text("".join(line + "\n" for line in faq.read_text(encoding="utf-8").splitlines() if "Tea" not in line), encoding="utf-8")
    out = _run(capsys, *args)
    assert "2 indexed documents are no longer in the sources ('corpus/notes/b.txt', 'tea'); --sync deletes them" in out
    assert len(_ids(capsys, index)) == 6
    out = _run(capsys, *args, "--sync")
    assert "removed 2 documents no longer in the sources" in out
    assert "corpus/notes/b.txt" not in _ids(capsys, index) and len(_ids(capsys, index)) == 4
    # Documents of other sources are outside the sync: they stay.
    other = tmp_path / "other.txt"
    other.write_text("Another source entirely.", encoding="utf-8")
    _run(capsys, "index", other, "--index", index)
    out = _run(capsys, *args, "--sync")
    assert "removed" not in out and "other.txt" in _ids(capsys, index)


def test_an_index_with_the_old_ids_is_detected_reused_and_synced(tmp_path, tiny_checkpoint, tiny_model, capsys, monkeypatch):
    """Indexes built before this change named files by their path as typed: `work/corpus/notes/a.md`."""
    from lfm_colbert.index import Index
    from lfm_colbert.ingest import read_documents

    _corpus(tmp_path / "work")
    monkeypatch.chdir(tmp_path)
    old = Index(tmp_path / "idx", tiny_model)
    docs = list(read_documents(["work/corpus"]))
    typed = {d.metadata["source"]: "work/" + d.metadata["source"] for d in docs}
    old_ids = [typed[d.id] if d.id in typed else (f"{typed[d.metadata['source']]}:{n}" if ":" in d.id else d.id)
               for n, d in enumerate(docs, 1)]
    old.add([d.text for d in docs], ids=old_ids, parents=old_ids,
            metadata=[{**d.metadata, "source": typed[d.metadata["source"]]} for d in docs])
    old.close()
    monkeypatch.setattr("lfm_colbert.encoder.ColBERT.encode", lambda *a, **k: pytest.fail("nothing needs encoding"))
    out = _run(capsys, "index", "work/corpus", "--index", tmp_path / "idx", "--model", tiny_checkpoint)
    assert "indexed 5 passages (5 of them copied from stored vectors" in out  # "tea" keeps its id; its source changed
    assert "4 indexed documents are these files under the ids an earlier version gave them" in out
    assert "'work/corpus/notes/a.md'" in out
    assert len(_ids(capsys, tmp_path / "idx")) == 9
    out = _run(capsys, "index", "work/corpus", "--index", tmp_path / "idx", "--sync")
    assert "removed 4 documents" in out and "earlier version" in out
    assert _ids(capsys, tmp_path / "idx") == sorted(d.id for d in docs)


def test_the_model_is_found_again(tmp_path, tiny_checkpoint, tiny_causal_checkpoint, capsys, monkeypatch):
    model = tmp_path / "model"
    shutil.copytree(tiny_checkpoint, model)
    corpus = _corpus(tmp_path)
    index = tmp_path / "idx"
    _run(capsys, "index", corpus / "faq.jsonl", "--index", index, "--model", model)
    model.rename(tmp_path / "moved")
    monkeypatch.delenv("LFM_COLBERT_MODEL", raising=False)
    assert main(["search", str(index), "coffee"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no such model directory") and f"recorded in {index / 'manifest.json'}" in err
    assert "--model PATH or LFM_COLBERT_MODEL=PATH" in err and len(err.strip().splitlines()) == 1
    assert "coffee" in _run(capsys, "search", index, "coffee", "--model", tmp_path / "moved")
    monkeypatch.setenv("LFM_COLBERT_MODEL", str(tmp_path / "moved"))
    assert "coffee" in _run(capsys, "search", index, "coffee")
    monkeypatch.setenv("LFM_COLBERT_MODEL", str(tiny_causal_checkpoint))  # another model: refused
    assert main(["search", str(index), "coffee"]) == 2
    err = capsys.readouterr().err
    assert "was built with model" in err and "from $LFM_COLBERT_MODEL" in err


def test_token_pooling_shrinks_the_index_and_is_fixed_at_creation(tmp_path, tiny_checkpoint, capsys):
    corpus = _corpus(tmp_path)
    sizes = {}
    for factor in (None, 2):
        index = tmp_path / f"idx{factor}"
        extra = ["--pool-factor", str(factor)] if factor else []
        out = _run(capsys, "index", corpus, "--index", index, "--model", tiny_checkpoint, *extra)
        assert ("tokens pooled by 2" in out) == bool(factor)
        assert main(["info", str(index), "--json"]) == 0
        info = json.loads(capsys.readouterr().out)
        sizes[factor] = info["tokens"]
        assert info.get("pool_factor") == factor
    assert 0.45 < sizes[2] / sizes[None] < 0.7  # BOS is kept; an odd count rounds up
    assert main(["index", str(corpus), "--index", str(tmp_path / "idxNone"), "--pool-factor", "2", "-q"]) == 2
    assert "not pooled; the pool factor is chosen when an index is created" in capsys.readouterr().err
    assert "penguins" in _run(capsys, "search", tmp_path / "idx2", "penguins", "-k", "1").lower()
