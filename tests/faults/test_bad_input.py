"""Bad input gets the package's own error, with a message about the input (issue 14, defects 6 and 8)."""

from __future__ import annotations

import numpy as np
import pytest
from faultkit import MODEL, vectors

from lfm_colbert.errors import InputError, LfmColbertError
from lfm_colbert.index import Index

SURROGATE = "a\ud800b"  # what a non-UTF-8 byte becomes in a command-line argument or a bad .jsonl
INT64 = r"2\*\*63|64-bit"  # the error for an integer SQLite cannot hold


@pytest.fixture
def index(tmp_path):
    index = Index(tmp_path / "idx", MODEL)
    index.add_vectors(vectors(6), ids=[f"d{i}" for i in range(6)], texts=["t"] * 6, metadata=[{"n": i} for i in range(6)])
    return index


Q = vectors(1, seed=9)[0]


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda ix: ix.add_vectors(None), "vectors"),
        (lambda ix: ix.add_vectors(5), "vectors"),
        (lambda ix: ix.delete(5), "id"),
        (lambda ix: ix.delete([5]), "id"),
        (lambda ix: ix.delete([2**63]), "id"),
        (lambda ix: ix.delete([["d1"]]), "id"),  # was blamed on a 'corrupted index file'
        (lambda ix: ix.delete([SURROGATE]), "surrogate"),
        (lambda ix: ix.search_vectors(0), "query vectors"),
        (lambda ix: ix.search_vectors(None), "query vectors"),
        (lambda ix: ix.search_vectors(np.full((2, 16), np.nan, np.float32)), "finite"),
        (lambda ix: ix.search_vectors(np.full((2, 16), np.inf, np.float32)), "finite"),
        (lambda ix: ix.search_vectors(Q, filter={"n": 2**63}), INT64),
        (lambda ix: ix.search_vectors(Q, filter={"n": -(2**63) - 1}), INT64),
        (lambda ix: ix.search_vectors(Q, filter={"n": [1, 2**64]}), INT64),
        (lambda ix: ix.search_vectors(Q, filter={SURROGATE: 1}), "filter"),
        (lambda ix: ix.search_vectors(Q, filter={"n": SURROGATE}), "surrogate"),
        (lambda ix: ix.list(filter={"n": 2**63}), INT64),
        (lambda ix: ix.list(after=SURROGATE), "surrogate"),
        (lambda ix: ix.list(after=5), "after"),
        (lambda ix: ix.get([SURROGATE]), "surrogate"),
        (lambda ix: ix.vectors([SURROGATE]), "surrogate"),
        (lambda ix: ix.vectors([7]), "id"),
        (lambda ix: ix.add_vectors(vectors(1), ids=[SURROGATE]), "surrogate"),
        (lambda ix: ix.add_vectors(vectors(1), ids=["x"], texts=[SURROGATE]), "surrogate"),
        (lambda ix: ix.add_vectors(vectors(1), ids=["x"], texts=[5]), "text"),
        (lambda ix: ix.add_vectors(vectors(1), ids=["x"], metadata=[{"k": SURROGATE}]), "surrogate"),
        (lambda ix: ix.add_vectors(vectors(1), ids=["x"], metadata=[{SURROGATE: 1}]), "surrogate"),
        (lambda ix: ix.add_vectors(vectors(1), ids=["x"], parents=[SURROGATE]), "surrogate"),
        (lambda ix: ix.add_vectors(vectors(1), ids=["x"], parents=[5]), "parent"),
        (lambda ix: ix.unchanged([SURROGATE], ["t"]), "surrogate"),
    ],
)
def test_bad_arguments_are_input_errors(index, call, message):
    with pytest.raises(InputError, match=message) as err:
        call(index)
    assert "corrupt" not in str(err.value)
    assert len(index) == 6  # nothing written


@pytest.mark.parametrize("call", [
    lambda ix: ix.add(None),
    lambda ix: ix.add([SURROGATE]),
    lambda ix: ix.search(SURROGATE),
    lambda ix: ix.search([None]),
    lambda ix: ix.upsert([5], ids=["x"]),
])
def test_bad_texts_are_input_errors_before_any_model_is_loaded(index, call):
    with pytest.raises(InputError):  # the index has no model: the text is checked first
        call(index)


def test_a_closed_index_says_so(index):
    """Defect 8: every call after close() reported a 'corrupted index file'."""
    index.close()
    for call in (lambda: index.search_vectors(Q), lambda: len(index), lambda: index.get("d1"), lambda: index.info(),
                 lambda: index.add_vectors(vectors(1), ids=["n"]), lambda: index.delete(["d1"]), lambda: list(index),
                 lambda: index.verify_files(), lambda: "d1" in index):
        with pytest.raises(LfmColbertError, match="closed") as err:
            call()
        assert "corrupt" not in str(err.value)
    index.close()  # closing twice is fine


def test_huge_but_valid_numbers_work(index):
    assert len(index.search_vectors(Q, k=2**70)) == 6
    assert len(index.list(limit=2**64)) == 6
    assert index.search_vectors(Q, filter={"n": 2**63 - 1}) == []
