"""Document preparation: files, folders and .jsonl become documents; long ones become overlapping passages."""

from __future__ import annotations

import json

import pytest

from lfm_colbert.errors import InputError
from lfm_colbert.ingest import Document, read_documents, split_passages


def test_reads_txt_md_jsonl_and_folders(tmp_path):
    (tmp_path / "c" / "sub").mkdir(parents=True)
    (tmp_path / "c" / "a.md").write_text("# Title\nBody", encoding="utf-8")
    (tmp_path / "c" / "sub" / "b.txt").write_text("texto en español", encoding="utf-8")
    (tmp_path / "c" / "skip.docx").write_bytes(b"PK")
    (tmp_path / "c" / ".hidden").mkdir()
    (tmp_path / "c" / ".hidden" / "x.txt").write_text("hidden")
    rows = [{"_id": 7, "title": "T", "text": "body", "lang": "en"}, {"text": "no id", "metadata": {"topic": "x"}}]
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    docs = list(read_documents([tmp_path / "c", tmp_path / "d.jsonl"]))
    by_id = {d.id: d for d in docs}
    hashed = next(i for i in by_id if i.startswith("d.jsonl:"))
    assert set(by_id) == {"c/a.md", "c/sub/b.txt", "7", hashed} and len(hashed) == len("d.jsonl:") + 12
    assert by_id["7"].text == "T\n\nbody" and by_id["7"].metadata == {"title": "T", "lang": "en", "source": "d.jsonl"}
    assert by_id[hashed].metadata == {"topic": "x", "source": "d.jsonl"}  # no line number: inserting lines moves nothing
    assert by_id["c/sub/b.txt"].metadata["source"] == "c/sub/b.txt"


def test_ids_do_not_depend_on_how_a_path_is_spelled(tmp_path, monkeypatch):
    (tmp_path / "corpus" / "sub").mkdir(parents=True)
    (tmp_path / "corpus" / "sub" / "a.txt").write_text("alpha", encoding="utf-8")
    (tmp_path / "corpus" / "b.jsonl").write_text('{"text": "beta"}\n', encoding="utf-8")
    spellings = [tmp_path / "corpus", str(tmp_path / "corpus") + "/", "corpus", "./corpus/../corpus"]
    monkeypatch.chdir(tmp_path)
    seen = [sorted(d.id for d in read_documents([s])) for s in spellings]
    monkeypatch.chdir(tmp_path / "corpus")
    seen.append(sorted(d.id for d in read_documents(["."])))
    assert all(ids == seen[0] for ids in seen) and seen[0][1] == "corpus/sub/a.txt"
    assert [d.id for d in read_documents(["sub/a.txt"])] == ["a.txt"]  # a file given directly: its name


def test_a_line_inserted_at_the_top_changes_no_other_id(tmp_path):
    lines = [json.dumps({"text": f"line {i}", "lang": "en"}) for i in range(5)] + [json.dumps({"text": "line 0"})]
    (tmp_path / "d.jsonl").write_text("\n".join(lines), encoding="utf-8")
    before = [(d.id, d.metadata) for d in read_documents([tmp_path / "d.jsonl"])]
    (tmp_path / "d.jsonl").write_text("\n".join([json.dumps({"text": "new"})] + lines), encoding="utf-8")
    after = [(d.id, d.metadata) for d in read_documents([tmp_path / "d.jsonl"])]
    assert after[1:] == before and after[0][0] not in dict(before)
    assert before[-1][0] == before[0][0] + "~2"  # the same text twice: told apart in order


def test_overlapping_sources_are_refused(tmp_path):
    (tmp_path / "c" / "sub").mkdir(parents=True)
    (tmp_path / "c" / "sub" / "a.txt").write_text("x", encoding="utf-8")
    with pytest.raises(InputError, match="inside"):
        list(read_documents([tmp_path / "c", tmp_path / "c" / "sub"]))
    with pytest.raises(InputError, match="the same as"):
        list(read_documents([tmp_path / "c", str(tmp_path / "c") + "/."]))


@pytest.mark.parametrize(
    "content, message",
    [("{bad json", "d.jsonl, line 1: not valid JSON"), ('{"id": "a"}', "d.jsonl, line 1: needs a string field 'text'"), ("[1]", "JSON object")],
)
def test_bad_jsonl_lines_are_named(tmp_path, content, message):
    (tmp_path / "d.jsonl").write_text(content)
    with pytest.raises(InputError, match=message):
        list(read_documents([tmp_path / "d.jsonl"]))


def test_missing_unsupported_and_non_utf8_sources(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        list(read_documents([tmp_path / "nope.txt"]))
    (tmp_path / "x.docx").write_bytes(b"x")
    with pytest.raises(InputError, match="unsupported"):
        list(read_documents([tmp_path / "x.docx"]))
    (tmp_path / "l.txt").write_bytes(b"caf\xe9")
    with pytest.raises(InputError, match="UTF-8"):
        list(read_documents([tmp_path / "l.txt"]))


def test_an_id_given_twice_names_both_places(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"id": "x", "text": "one"}\n{"id": "y", "text": "two"}\n', encoding="utf-8")
    (tmp_path / "b.jsonl").write_text('\n{"id": "x", "text": "three"}\n', encoding="utf-8")
    with pytest.raises(InputError, match="id 'x' is given twice: a.jsonl, line 1 and b.jsonl, line 2"):
        list(read_documents([tmp_path / "a.jsonl", tmp_path / "b.jsonl"]))


def test_byte_order_marks_are_read_as_text(tmp_path):
    # What Windows editors save: UTF-8 with a BOM (json.loads rejects it on line 1) and UTF-16 "Unicode".
    (tmp_path / "d.jsonl").write_bytes(b"\xef\xbb\xbf" + json.dumps({"id": "k", "text": "première"}).encode() + b"\r\n")
    (tmp_path / "u.txt").write_text("ペンギン\r\n", encoding="utf-16")  # LE with a BOM
    (tmp_path / "b.md").write_bytes("\ufeffÜber".encode("utf-16-be"))
    docs = {d.id: d.text for d in read_documents([tmp_path / "d.jsonl", tmp_path / "u.txt", tmp_path / "b.md"])}
    assert list(docs.values()) == ["première", "ペンギン\r\n", "Über"]


def test_a_folder_skips_files_that_are_not_text_and_says_so(tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "good.txt").write_text("fine", encoding="utf-8")
    (tmp_path / "c" / "latin1.txt").write_bytes(b"caf\xe9")
    with pytest.warns(UserWarning, match=r"latin1.txt: not UTF-8 text .*; skipped"):
        docs = list(read_documents([tmp_path / "c"]))
    assert [d.text for d in docs] == ["fine"]
    (tmp_path / "c" / "bad.jsonl").write_text("{oops\n", encoding="utf-8")
    with pytest.raises(InputError, match="bad.jsonl, line 1"):  # data, not a stray file: never skipped
        list(read_documents([tmp_path / "c"]))


def _check_passages(doc, passages, max_tokens, overlap, count):
    assert len(passages) > 1
    assert all(p.parent == doc.id for p in passages)
    assert [p.id for p in passages] == [f"{doc.id}#{i}" for i in range(len(passages))]
    for p in passages:
        assert p.text == doc.text[p.metadata["start"] : p.metadata["end"]]  # offsets point at the span
        assert count(p.text) <= max_tokens
    assert passages[0].metadata["start"] == 0 and passages[-1].metadata["end"] == len(doc.text.rstrip())
    for a, b in zip(passages, passages[1:]):
        assert b.metadata["start"] < a.metadata["end"]  # consecutive passages overlap


def test_split_long_documents_without_a_tokenizer():
    text = " ".join(f"word{i}" for i in range(100))
    doc = Document("doc", text, {"source": "s"})
    passages = list(split_passages([doc], max_tokens=30, overlap=5))
    _check_passages(doc, passages, 30, 5, lambda t: len(t.split()))
    assert passages[0].metadata["source"] == "s"
    short = list(split_passages([Document("s", "short text")], max_tokens=30))
    assert [(p.id, p.text) for p in short] == [("s", "short text")]


def test_split_with_the_real_tokenizer_keeps_cjk_offsets(real_tokenizer_file):
    if real_tokenizer_file is None:
        pytest.skip("needs ../shared/data/lfm2-tokenizer")
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(real_tokenizer_file))
    text = "ペンギンは空を飛べない鳥ですが、翼をひれのように使って海の中を速く泳ぎます。" * 8
    doc = Document("ja", text)
    passages = list(split_passages([doc], max_tokens=40, overlap=8, tokenizer=tok))
    _check_passages(doc, passages, 40, 8, lambda t: len(tok.encode(t, add_special_tokens=False).ids))


def test_bad_split_settings():
    with pytest.raises(InputError):
        list(split_passages([Document("a", "b")], max_tokens=0))
    with pytest.raises(InputError):
        list(split_passages([Document("a", "b")], max_tokens=10, overlap=10))
