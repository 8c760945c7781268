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
    (tmp_path / "c" / "skip.pdf").write_bytes(b"%PDF")
    (tmp_path / "c" / ".hidden").mkdir()
    (tmp_path / "c" / ".hidden" / "x.txt").write_text("hidden")
    rows = [{"_id": 7, "title": "T", "text": "body", "lang": "en"}, {"text": "no id", "metadata": {"topic": "x"}}]
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    docs = list(read_documents([tmp_path / "c", tmp_path / "d.jsonl"]))
    by_id = {d.id: d for d in docs}
    c = (tmp_path / "c").as_posix()
    assert set(by_id) == {f"{c}/a.md", f"{c}/sub/b.txt", "7", f"{tmp_path.as_posix()}/d.jsonl:2"}
    assert by_id["7"].text == "T\n\nbody" and by_id["7"].metadata["lang"] == "en"
    assert by_id[f"{tmp_path.as_posix()}/d.jsonl:2"].metadata["topic"] == "x"
    assert by_id[f"{c}/sub/b.txt"].metadata["source"] == f"{c}/sub/b.txt"


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
    (tmp_path / "x.pdf").write_bytes(b"x")
    with pytest.raises(InputError, match="unsupported"):
        list(read_documents([tmp_path / "x.pdf"]))
    (tmp_path / "l.txt").write_bytes(b"caf\xe9")
    with pytest.raises(InputError, match="UTF-8"):
        list(read_documents([tmp_path / "l.txt"]))


def test_an_id_given_twice_names_both_places(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"id": "x", "text": "one"}\n{"id": "y", "text": "two"}\n', encoding="utf-8")
    (tmp_path / "b.jsonl").write_text('\n{"id": "x", "text": "three"}\n', encoding="utf-8")
    a, b = (tmp_path / "a.jsonl").as_posix(), (tmp_path / "b.jsonl").as_posix()
    with pytest.raises(InputError, match=f"id 'x' is given twice: {a}, line 1 and {b}, line 2"):
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
