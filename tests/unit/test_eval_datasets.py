"""BEIR folders, dataset names and subsets: loading and every kind of bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lfm_colbert.errors import DatasetError
from lfm_colbert.eval.datasets import RetrievalDataset, load_beir_folder, load_cached, save_beir_folder
from lfm_colbert.eval.sources import expand_specs, load_dataset


def write_beir(root: Path, corpus=None, queries=None, qrels=None, split="test") -> Path:
    corpus = corpus if corpus is not None else [
        {"_id": "d1", "title": "Cats", "text": "Cats purr."},
        {"_id": "d2", "title": "", "text": "Dogs bark."},
        {"_id": "d3", "text": "Fish swim."},
    ]
    queries = queries if queries is not None else [{"_id": "q1", "text": "purring"}, {"_id": "q2", "text": "barking"}, {"_id": "q3", "text": "train only"}]
    qrels = qrels if qrels is not None else [("q1", "d1", 1), ("q2", "d2", 2), ("q2", "d3", 0)]
    root.mkdir(parents=True, exist_ok=True)
    (root / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in corpus))
    (root / "queries.jsonl").write_text("".join(json.dumps(r) + "\n" for r in queries))
    if qrels is not False:
        (root / "qrels").mkdir(exist_ok=True)
        (root / "qrels" / f"{split}.tsv").write_text(
            "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{s}\n" for q, d, s in qrels)
        )
    return root


def test_loads_a_beir_folder(tmp_path):
    ds = load_beir_folder(write_beir(tmp_path / "toy"))
    assert ds.name == "toy" and ds.lang == "en"
    assert ds.corpus == {"d1": "Cats Cats purr.", "d2": "Dogs bark.", "d3": "Fish swim."}
    assert set(ds.queries) == {"q1", "q2"}  # only the split's queries
    assert ds.qrels == {"q1": {"d1": 1}, "q2": {"d2": 2, "d3": 0}}
    assert ds.stats() == {"n_docs": 3, "n_queries": 2, "lang": "en"}


def test_qrels_without_header_and_trec_style(tmp_path):
    root = write_beir(tmp_path / "t", qrels=False)
    (root / "qrels").mkdir()
    (root / "qrels" / "test.tsv").write_text("q1\td1\t1\nq2\t0\td2\t1\n")
    assert load_beir_folder(root).qrels == {"q1": {"d1": 1}, "q2": {"d2": 1}}


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda r: write_beir(r, qrels=False), "missing qrels"),
        (lambda r: write_beir(r, qrels=[("q1", "nope", 1)]), "not in the corpus"),
        (lambda r: write_beir(r, qrels=[("qx", "d1", 1)]), "queries that are not in the queries"),
        (lambda r: write_beir(r, corpus=[]), "corpus is empty"),
        (lambda r: write_beir(r, qrels=[("q1", "d1", 0)]), "judge no document relevant"),
        (lambda r: write_beir(r, split="dev"), "no qrels for split 'test'; available: dev"),
    ],
)
def test_bad_folders_raise_clear_errors(tmp_path, build, message):
    root = tmp_path / "bad"
    build(root)
    with pytest.raises(DatasetError, match=message):
        load_beir_folder(root)


def test_missing_files_and_folders(tmp_path):
    with pytest.raises(DatasetError, match="no such folder"):
        load_beir_folder(tmp_path / "absent")
    root = write_beir(tmp_path / "x")
    (root / "queries.jsonl").unlink()
    with pytest.raises(DatasetError, match="missing queries.jsonl"):
        load_beir_folder(root)


def test_malformed_jsonl_names_the_line(tmp_path):
    root = write_beir(tmp_path / "x")
    with open(root / "corpus.jsonl", "a") as f:
        f.write("{not json\n")
    with pytest.raises(DatasetError, match="line 4"):
        load_beir_folder(root)


def test_unknown_dataset_names(tmp_path):
    with pytest.raises(DatasetError, match="unknown dataset 'scifakt'"):
        load_dataset("scifakt")
    with pytest.raises(DatasetError, match="Did you mean nano:scifact"):
        load_dataset("scifct")
    with pytest.raises(DatasetError, match="Did you mean scifact"):
        load_dataset("nano:scifakt")
    with pytest.raises(DatasetError, match="unknown NanoBEIR set"):
        load_dataset("nano:nosuchset")
    with pytest.raises(DatasetError, match="unknown MIRACL language"):
        load_dataset("miracl:xx")
    with pytest.raises(DatasetError, match="no such folder"):
        load_dataset(str(tmp_path / "missing" / "folder"))


def test_expand_specs():
    assert expand_specs(["a,b", "c"]) == ["a", "b", "c"]
    assert expand_specs(["miracl"]) == ["miracl:es", "miracl:de", "miracl:ja", "miracl:ar"]
    assert len(expand_specs(["nanobeir"])) == 13


def test_subset_keeps_judged_documents():
    corpus = {f"d{i}": f"text {i}" for i in range(100)}
    queries = {f"q{i}": f"query {i}" for i in range(10)}
    qrels = {f"q{i}": {f"d{i * 7}": 1} for i in range(10)}
    ds = RetrievalDataset("toy", corpus, queries, qrels).validate()
    sub = ds.subset(max_docs=30, seed=1)
    assert len(sub.corpus) == 30
    assert {f"d{i * 7}" for i in range(10)} <= set(sub.corpus)
    assert sub.corpus == ds.subset(max_docs=30, seed=1).corpus  # seeded
    assert sub.corpus != ds.subset(max_docs=30, seed=2).corpus
    few = ds.subset(max_docs=2, max_queries=3, seed=0)
    assert len(few.queries) == 3 and set(few.qrels) == set(few.queries)
    assert len(few.corpus) == 3  # judged documents only: the cap never drops them
    few.validate()


def test_cache_roundtrip(tmp_path):
    ds = RetrievalDataset("toy", {"d1": "a b", "d2": "ü ñ 中文"}, {"q1": "x"}, {"q1": {"d1": 1, "d2": 0}}, lang="es", meta={"source": "hub"})
    save_beir_folder(ds, tmp_path / "c")
    back = load_cached(tmp_path / "c")
    assert back.corpus == ds.corpus and back.queries == ds.queries and back.qrels == ds.qrels
    assert back.lang == "es" and back.name == "toy" and back.meta["source"] == "hub"
    assert load_cached(tmp_path / "nothing") is None
