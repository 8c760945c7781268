"""The PyTorch backend against transformers' Lfm2Model (+ LiquidAI's bidirectional changes for LFM2.5)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hf_reference import HFReference
from parity_texts import DOCS, QUERIES
from lfm_colbert import ColBERT

pytest.importorskip("transformers")


@pytest.fixture(scope="module", params=["lfm2.5", "lfm2"])
def pair(request, tiny_checkpoint, tiny_causal_checkpoint):
    path = tiny_checkpoint if request.param == "lfm2.5" else tiny_causal_checkpoint
    return ColBERT(path, backend="torch", dtype="float32", device="cpu"), HFReference(path)


def min_cos(a: np.ndarray, b: np.ndarray, keep: np.ndarray | None = None) -> float:
    cos = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    return float(cos[keep].min() if keep is not None else cos.min())


@pytest.mark.parametrize("is_query", [False, True])
def test_padded_batch_matches_reference(pair, is_query):
    model, ref = pair
    texts = QUERIES if is_query else DOCS
    tok = model.tokenize(texts, is_query=is_query)
    assert (tok["attention_mask"] == 0).any(), "the batch must contain padding"
    ours = model.backend.forward(tok["input_ids"], tok["attention_mask"])
    theirs = ref(tok["input_ids"], tok["attention_mask"]).numpy()
    # Every position, pads included: they feed the conv, so they must match too.
    assert min_cos(ours, theirs) >= 0.99999


class CountingModel:
    """Wraps the torch Model and records how many rows each call gets."""

    def __init__(self, net):
        self.net, self.args, self.rows = net, net.args, []

    def __call__(self, ids, mask):
        self.rows.append(len(ids))
        return self.net(ids, mask)


def test_cpu_row_chunks_change_nothing(pair, monkeypatch):
    """The CPU backend runs big batches a few rows at a time; the result must be the whole batch's."""
    model, ref = pair
    tok = model.tokenize(DOCS)
    whole = model.backend.forward(tok["input_ids"], tok["attention_mask"])
    monkeypatch.setattr(model.backend, "cpu_tokens_per_call", 2 * tok["input_ids"].shape[1])  # 2 rows a call
    counting = CountingModel(model.backend.model)
    monkeypatch.setattr(model.backend, "model", counting)
    chunked = model.backend.forward(tok["input_ids"], tok["attention_mask"])
    assert counting.rows == [2, 2, 1]
    assert chunked.shape == whole.shape and chunked.dtype == np.float32
    np.testing.assert_array_equal(chunked, whole)
    assert min_cos(chunked, ref(tok["input_ids"], tok["attention_mask"]).numpy()) >= 0.99999


def test_encode_matches_reference_per_text(pair):
    """encode() (sorting, batching, skiplist, order restore) against the reference run text by text."""
    model, ref = pair
    encoded = model.encode(DOCS, batch_size=2)
    for text, vectors in zip(DOCS, encoded):
        tok = model.tokenize([text])
        full = ref(tok["input_ids"], tok["attention_mask"]).numpy()[0]
        keep = model.tokenizer.output_mask(tok["input_ids"], tok["attention_mask"], False)[0]
        expected = full[keep]
        assert vectors.shape == expected.shape
        if model.variant == "lfm2":
            assert min_cos(vectors, expected) >= 0.99999  # causal: padding never reaches real tokens
        else:
            assert min_cos(vectors, expected) > 0.5  # LFM2.5: batch padding leaks in (checked below)


@pytest.mark.parametrize("is_query", [False, True])
def test_bf16_matches_reference_in_bf16(tiny_checkpoint, tiny_causal_checkpoint, is_query):
    """Against transformers loaded in bf16 as PyLate loads it, the same outputs, not just as close to fp32."""
    for path in (tiny_checkpoint, tiny_causal_checkpoint):
        model = ColBERT(path, backend="torch", dtype="bfloat16", device="cpu")
        ref = HFReference(path, dtype=torch.bfloat16, attn="sdpa")
        tok = model.tokenize(QUERIES if is_query else DOCS, is_query=is_query)
        ours = model.backend.forward(tok["input_ids"], tok["attention_mask"])
        theirs = ref(tok["input_ids"], tok["attention_mask"]).numpy()
        assert min_cos(ours, theirs, tok["attention_mask"].astype(bool)) >= 0.9999


def test_bf16_close_to_fp32(tiny_checkpoint):
    fp32 = ColBERT(tiny_checkpoint, backend="torch", dtype="float32", device="cpu")
    bf16 = ColBERT(tiny_checkpoint, backend="torch", dtype="bfloat16", device="cpu")
    for a, b in zip(fp32.encode(DOCS), bf16.encode(DOCS)):
        assert min_cos(a, b) > 0.98
