"""Every input to the public API gets a result or the package's own error, never another exception
(issue 14: hypothesis over Index, ColBERT.encode, rerank, filters and the command line)."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest
from faultkit import MODEL, vectors
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lfm_colbert.errors import LfmColbertError
from lfm_colbert.index import Index, rerank

# Text of every kind: lone surrogates (what non-UTF-8 bytes become), control characters, blanks.
text = st.text(st.characters(exclude_categories=()), max_size=40)
ints = st.one_of(st.integers(-3, 30), st.integers(), st.sampled_from([2**63 - 1, 2**63, -(2**63) - 1, 2**64]))
scalars = st.one_of(st.none(), st.booleans(), ints, st.floats(), text, st.binary(max_size=8))
anything = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4), st.tuples(inner, inner),
                                                         st.dictionaries(st.one_of(text, ints), inner, max_size=3)),
                        max_leaves=8)
keys = st.one_of(st.sampled_from(["n", "lang", "tags", "missing"]), text, ints)
filters = st.one_of(st.none(), anything, st.dictionaries(keys, st.one_of(scalars, st.lists(scalars, max_size=3)), max_size=3))
ks = st.one_of(st.integers(-2, 40), ints, st.floats(), st.booleans(), st.none(), text)
shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5).map(lambda s: s[:-1] + (16,) if s else s)
arrays = st.one_of(
    hnp.arrays(st.sampled_from([np.float32, np.float64, np.float16]), shapes,
               elements=st.floats(-2, 2, width=16) | st.sampled_from([np.nan, np.inf])),
    hnp.arrays(st.sampled_from([np.int64, np.bool_, np.complex64]), shapes),
    hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=5), elements=st.floats(-1, 1, width=32)),
)
queries = st.one_of(arrays, st.lists(arrays, max_size=3), anything)
id_lists = st.one_of(anything, st.lists(st.one_of(st.sampled_from(["d1", "d2", "nope", "p0"]), text, ints), max_size=4))


def _ok_or_ours(call):
    """Run `call`; an exception that is not an LfmColbertError fails the property."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return call(), None
        except LfmColbertError as exc:
            assert str(exc).strip(), "an error with no message"
            return None, exc


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    path = tmp_path_factory.mktemp("props") / "idx"
    ix = Index(path, MODEL)
    docs = vectors(20, seed=3)
    ix.add_vectors(docs, ids=[f"d{i}" for i in range(20)], texts=[f"text {i}" for i in range(20)],
                   metadata=[{"n": i, "lang": ["en", "de"][i % 2], "tags": ["a", str(i % 3)]} for i in range(20)],
                   parents=[None] * 15 + ["p0"] * 5)
    return ix


@given(q=queries, k=ks, filter=filters)
def test_search_vectors(index, q, k, filter):
    result, err = _ok_or_ours(lambda: index.search_vectors(q, k=k, filter=filter))
    if err is None and filter is None:
        lists = [result] if isinstance(q, np.ndarray) and q.ndim == 2 else result
        assert all(len(hits) == min(int(k), 20) for hits in lists)  # every document is a candidate
        for hits in lists:
            assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


@given(filter=filters, limit=ks, after=st.one_of(st.none(), text, ints))
def test_list_get_and_filters(index, filter, limit, after):
    _ok_or_ours(lambda: index.list(filter=filter, limit=limit, after=after))
    _ok_or_ours(lambda: index.list(filter=filter))


@given(ids=id_lists)
def test_reads_by_id(index, ids):
    _ok_or_ours(lambda: index.get(ids))
    _ok_or_ours(lambda: index.vectors(ids))
    _ok_or_ours(lambda: ids in index)


@given(vecs=queries, ids=id_lists, texts=st.one_of(anything, st.lists(st.one_of(text, st.none()), max_size=3)),
       metadata=st.one_of(anything, st.lists(anything, max_size=3)), parents=id_lists, upsert=st.booleans())
def test_writes(tmp_path_factory, vecs, ids, texts, metadata, parents, upsert):
    """Writes on a fresh copy: an error leaves it as it was; a success adds what was given."""
    path = tmp_path_factory.mktemp("w") / "idx"
    ix = Index(path, MODEL)
    ix.add_vectors(vectors(3, seed=1), ids=["d1", "d2", "p0#0"], parents=[None, None, "p0"])
    before = {d.id: d for d in ix.list()}
    result, err = _ok_or_ours(lambda: ix.add_vectors(vecs, ids=ids, texts=texts, metadata=metadata, parents=parents, upsert=upsert))
    after = {d.id: d for d in ix.list()}
    if err is not None:
        assert after == before
    else:
        assert set(result) <= set(after)
    _ok_or_ours(lambda: ix.delete(ids, missing_ok=upsert))
    ix.verify_files()
    ix.close()
    shutil.rmtree(path.parent)


@given(path=st.one_of(anything.map(lambda p: ("as is", p)),
                      st.lists(st.sampled_from(["a", "b", ".", "..", "x y", "é", "\udcff"]), min_size=1, max_size=3).map(
                          lambda parts: ("under tmp", parts))),
       model=st.one_of(st.just(MODEL), st.dictionaries(st.sampled_from(["dim", "model_id", "variant"]), anything, max_size=3)),
       compress=st.one_of(st.none(), st.sampled_from([2, 4]), ks), rescore=anything, train_tokens=st.one_of(st.none(), ks),
       n_centroids=st.one_of(st.none(), ks))
def test_index_constructor(tmp_path_factory, path, model, compress, rescore, train_tokens, n_centroids):
    root = tmp_path_factory.mktemp("ctor")
    where = root.joinpath(*path[1]) if path[0] == "under tmp" else path[1]
    _ok_or_ours(lambda: Index(where, model, compress=compress, rescore=rescore, train_tokens=train_tokens,
                              n_centroids=n_centroids).close())
    shutil.rmtree(root, ignore_errors=True)


@given(texts=st.one_of(anything, text, st.lists(st.one_of(text, anything), max_size=4)), is_query=st.booleans(),
       batch_size=ks)
def test_encode(tiny_model, texts, is_query, batch_size):
    out, err = _ok_or_ours(lambda: tiny_model.encode(texts, is_query=is_query, batch_size=batch_size, show_progress_bar=False))
    if err is None:
        assert all(v.ndim == 2 and v.shape[1] == tiny_model.dim and np.isfinite(v).all() for v in out)


@given(query=st.one_of(text, anything), docs=st.one_of(anything, st.lists(text, max_size=4)), k=st.one_of(st.none(), ks))
def test_rerank(tiny_model, query, docs, k):
    out, err = _ok_or_ours(lambda: rerank(query, docs, model=tiny_model, k=k))
    if err is None:
        assert [r.score for r in out] == sorted((r.score for r in out), reverse=True)
        assert len({r.index for r in out}) == len(out)


# -- the command line ----------------------------------------------------------------------------------
COMMANDS = {
    "search": ["-k", "--filter", "--json", "--queries", "--model", "--device", "--backend"],
    "info": ["--json", "--verify"],
    "delete": ["--missing-ok"],
    "index": ["--index", "--compress", "--rescore", "--train-tokens", "--max-tokens", "--overlap", "--batch-size",
              "--commit-every", "--force", "-q", "--device"],
    "eval": ["--model", "--dataset", "--max-docs", "--max-queries", "-k", "--output", "--seed", "--precision"],
}
values = st.one_of(text, ints.map(str), st.sampled_from(["{idx}", "{missing}", "{file}", "bm25", "n=1", f"n={2**70}",
                                                          "lang=en", "cpu", "cuda:9", "2", "0", "-5", "{beir}"]))


@pytest.fixture(scope="module")
def cli_world(tmp_path_factory, index, tiny_checkpoint):
    root = tmp_path_factory.mktemp("cli")
    shutil.copytree(index.path, root / "idx")  # its own copy: `delete` may remove documents
    (root / "doc.txt").write_text("penguins live in the south")
    beir = root / "beir"
    (beir / "qrels").mkdir(parents=True)
    (beir / "corpus.jsonl").write_text('{"_id": "c1", "text": "penguins"}\n{"_id": "c2", "text": "cats"}\n')
    (beir / "queries.jsonl").write_text('{"_id": "q1", "text": "penguin"}\n')
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\tc1\t1\n")
    return {"idx": str(root / "idx"), "missing": str(root / "missing"), "file": str(root / "doc.txt"), "beir": str(beir),
            "root": root}


@given(command=st.sampled_from(sorted(COMMANDS)), data=st.data())
def test_command_line(cli_world, command, data, capsys, monkeypatch, tiny_checkpoint):
    """Any command line: exit 0, or 2 with one `error: ...` line (1: nothing to index)."""
    from lfm_colbert.cli import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a hub id must fail at once, not wait on the network
    monkeypatch.setenv("LFM_COLBERT_MODEL", str(tiny_checkpoint))
    fill = {k: v for k, v in cli_world.items() if k != "root"}
    positional = data.draw(st.lists(values, max_size=3))
    options = data.draw(st.lists(st.tuples(st.sampled_from(COMMANDS[command]), values), max_size=3))
    argv = [command] + [a for opt in options for a in opt] + positional
    argv = [a.format(**fill) if a.startswith("{") and a.endswith("}") and a[1:-1] in fill else a for a in argv]
    if command == "index":  # never write into the shared index
        assume(cli_world["idx"] not in argv)
        argv += ["--index", str(cli_world["root"] / "new")]
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(argv)
    err = capsys.readouterr().err
    assert code in (0, 1, 2), (argv, code, err)
    if code == 2:
        lines = [line for line in err.splitlines() if line.strip()]
        assert lines[-1].startswith("error: ") and "Traceback" not in err, (argv, err)
        assert len([line for line in lines if not line.startswith("warning: ")]) == 1, (argv, err)
    shutil.rmtree(cli_world["root"] / "new", ignore_errors=True)
