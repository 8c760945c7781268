"""encode() and tokenize(): PyLate conventions, ordering, and bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from lfm_colbert import ColBERT
from lfm_colbert.errors import InputError


@pytest.mark.parametrize(
    "texts,message",
    [
        (None, "None"),
        ([], "empty"),
        (["ok", ""], r"texts\[1\] is empty"),
        (["ok", "  \n\t"], r"texts\[1\] is empty or whitespace-only"),
        (["ok", 3], r"texts\[1\] is int, not str"),
        (["ok", None, b"x"], r"texts\[1\] is NoneType, not str \(and 1 more"),
        (42, "string or a list of strings"),
    ],
)
def test_bad_texts(tiny_model, texts, message):
    with pytest.raises(InputError, match=message):
        tiny_model.encode(texts)


@pytest.mark.parametrize("batch_size", [0, -1, 1.5, True, "8"])
def test_bad_batch_size(tiny_model, batch_size):
    with pytest.raises(InputError, match="batch_size"):
        tiny_model.encode(["hello"], batch_size=batch_size)


def test_bad_backend_and_dtype(tiny_checkpoint):
    with pytest.raises(InputError, match="backend"):
        ColBERT(tiny_checkpoint, backend="tensorflow")
    with pytest.raises(InputError, match="dtype"):
        ColBERT(tiny_checkpoint, backend="torch", dtype="int8")


@pytest.mark.parametrize(
    ("device", "message"),
    [("bogus", "unknown device"), ("xpu", "not supported"), ("mps", "Metal"), ("cuda:64", "CUDA device")],
)
def test_bad_or_absent_device(tiny_checkpoint, device, message):
    with pytest.raises(InputError, match=message):
        ColBERT(tiny_checkpoint, backend="torch", device=device)


def test_single_string_is_one_text(tiny_model):
    out = tiny_model.encode("penguins", is_query=True)
    assert len(out) == 1 and out[0].shape == (32, 128)


def test_query_shape_norm_and_expansion(tiny_model):
    tok = tiny_model.tokenize(["a query"], is_query=True)
    assert tok["input_ids"].shape == (1, 32) and tok["input_ids"].dtype == np.int64
    n = int(tok["attention_mask"].sum())
    assert (tok["input_ids"][0, n:] == tiny_model.tokenizer.pad_token_id).all()
    assert tiny_model.tokenizer.pad_token_id == 7
    (vec,) = tiny_model.encode(["a query"], is_query=True)
    assert vec.shape == (32, 128) and vec.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vec, axis=1), 1.0, atol=1e-5)


def test_no_query_expansion_keeps_only_real_tokens(tiny_checkpoint):
    model = ColBERT(tiny_checkpoint, backend="torch", dtype="float32", do_query_expansion=False)
    tok = model.tokenize(["short", "a somewhat longer query text"], is_query=True)
    assert tok["input_ids"].shape[1] < 32  # padded to the longest, not to query_length
    out = model.encode(["short", "a somewhat longer query text"], is_query=True)
    assert [len(v) for v in out] == tok["attention_mask"].sum(1).tolist()




def test_batching_and_order_with_the_causal_model(tiny_causal_checkpoint):
    model = ColBERT(tiny_causal_checkpoint, backend="torch", dtype="float32")
    texts = ["x" * n + " words here" for n in (3, 40, 1, 17, 8, 25, 2)]
    batched = model.encode(texts, batch_size=3)
    for text, vec in zip(texts, batched):
        (alone,) = model.encode([text])
        np.testing.assert_allclose(vec, alone, atol=1e-5)


def test_long_documents_are_truncated_with_one_warning(tiny_checkpoint):
    model = ColBERT(tiny_checkpoint, backend="torch", dtype="float32", document_length=16)
    texts = ["word " * 200, "another " * 300, "short text"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = model.encode(texts)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and "2 of 3 documents" in messages[0] and "16 tokens" in messages[0]
    assert max(len(v) for v in out) <= 16


def test_enormous_text_is_bounded(tiny_model):
    huge = "lorem ipsum dolor sit amet " * 400_000  # ~10 MB
    with pytest.warns(UserWarning, match="truncated"):
        (vec,) = tiny_model.encode([huge])
    assert len(vec) <= 512


def test_document_length_override_up_to_the_context(tiny_checkpoint):
    model = ColBERT(tiny_checkpoint, backend="torch", dtype="float32", document_length=1024)
    tok = model.tokenize(["word " * 2000])
    assert tok["input_ids"].shape[1] == 1024
