"""Against real PyLate outputs of LFM2.5-ColBERT-350M (../shared/data/lfm2-colbert-reference)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lfm_colbert.scoring import maxsim


@pytest.fixture(scope="module")
def reference(shared_data):
    from safetensors.numpy import load_file

    ref = shared_data / "lfm2-colbert-reference"
    texts = json.loads((ref / "texts.json").read_text(encoding="utf-8"))
    return texts, load_file(str(ref / "colbert_reference.safetensors"))


@pytest.fixture(scope="module")
def model(tiny_checkpoint, real_tokenizer_file):
    if real_tokenizer_file is None:
        pytest.skip("needs the real LFM2 tokenizer in ../shared/data/lfm2-tokenizer")
    from lfm_colbert import ColBERT

    return ColBERT(tiny_checkpoint, backend="torch", dtype="float32")


@pytest.mark.parametrize("kind", ["query", "document"])
def test_token_ids_and_masks_equal(model, reference, kind):
    texts, ref = reference
    for i, text in enumerate(texts["queries" if kind == "query" else "documents"]):
        tok = model.tokenize([text], is_query=kind == "query")
        np.testing.assert_array_equal(tok["input_ids"][0], ref[f"{kind}.{i}.input_ids"])
        np.testing.assert_array_equal(tok["attention_mask"][0], ref[f"{kind}.{i}.attention_mask"])


def test_padded_document_batch_keeps_reference_ids(model, reference):
    texts, ref = reference
    tok = model.tokenize(texts["documents"])
    for i in range(3):
        n = len(ref[f"document.{i}.input_ids"])
        np.testing.assert_array_equal(tok["input_ids"][i, :n], ref[f"document.{i}.input_ids"])
        assert (tok["input_ids"][i, n:] == 7).all() and (tok["attention_mask"][i, n:] == 0).all()


def test_vector_counts_after_skiplist(model, reference):
    texts, ref = reference
    docs = model.encode(texts["documents"])
    queries = model.encode(texts["queries"], is_query=True)
    assert [d.shape for d in docs] == [ref[f"document.{i}.vectors"].shape for i in range(3)]
    assert [q.shape for q in queries] == [ref[f"query.{i}.vectors"].shape for i in range(2)]


def test_skiplist_ids_match_pylate(model):
    expected = list(range(510, 525)) + list(range(535, 542)) + list(range(568, 574)) + list(range(600, 604))
    assert model.tokenizer.skiplist_ids.tolist() == expected


def test_maxsim_of_stored_vectors_equals_stored_scores(reference):
    _, ref = reference
    docs = [ref[f"document.{i}.vectors"] for i in range(3)]
    scores = maxsim(ref["query.0.vectors"], docs)
    np.testing.assert_allclose(scores, [ref[f"maxsim.0.{i}"][0] for i in range(3)], rtol=1e-6)
    for v in docs + [ref["query.0.vectors"], ref["query.1.vectors"]]:
        np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
