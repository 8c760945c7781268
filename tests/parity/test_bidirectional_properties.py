"""Properties that tell the bidirectional LFM2.5 from the causal LFM2 (model-spec section 9)."""

from __future__ import annotations

import numpy as np
import pytest

from lfm_colbert import ColBERT


@pytest.fixture(scope="module")
def models(tiny_checkpoint, tiny_causal_checkpoint):
    return {
        "lfm2.5": ColBERT(tiny_checkpoint, backend="torch", dtype="float32"),
        "lfm2": ColBERT(tiny_causal_checkpoint, backend="torch", dtype="float32"),
    }


def _forward(model, ids, mask):
    return model.backend.forward(np.asarray(ids, dtype=np.int64), np.asarray(mask, dtype=np.int64))


def test_variant_read_from_config(models):
    assert models["lfm2.5"].variant == "lfm2.5"
    assert models["lfm2"].variant == "lfm2"


@pytest.mark.parametrize("variant,moves", [("lfm2.5", True), ("lfm2", False)])
def test_last_token_reaches_position_zero_only_when_bidirectional(models, variant, moves):
    model = models[variant]
    ids = model.tokenize(["a short sentence about penguins and ice"])["input_ids"]
    mask = np.ones_like(ids)
    changed = ids.copy()
    changed[0, -1] = ids[0, -1] + 1
    a, b = _forward(model, ids, mask)[0, 0], _forward(model, changed, mask)[0, 0]
    assert bool(np.abs(a - b).max() > 1e-4) == moves


@pytest.mark.parametrize("variant,moves", [("lfm2.5", True), ("lfm2", False)])
def test_pad_id_changes_outputs_near_padding_only_when_bidirectional(models, variant, moves):
    """Pads are real conv inputs in LFM2.5 (pad id 7 matters); invisible to real tokens in LFM2."""
    model = models[variant]
    tok = model.tokenize(["a much longer document that forces the next one to be padded", "short one"])
    ids, mask = tok["input_ids"], tok["attention_mask"]
    other = np.where(mask == 1, ids, 0)  # pad with 0 instead of 7
    n = int(mask[1].sum())
    a = _forward(model, ids, mask)[1, :n]
    b = _forward(model, other, mask)[1, :n]
    diff = np.abs(a - b).max(axis=-1)  # per real token of the padded text
    assert bool(diff[-1] > 1e-4) == moves
    assert diff[0] < 1e-4 or moves  # far from the pads only the bidirectional model can move


def test_batch_padding_changes_lfm25_documents_but_not_lfm2(models):
    texts = ["a much longer document that forces the next one to be padded in its batch", "short one"]
    for variant, model in models.items():
        alone = model.encode([texts[1]])[0]
        batched = model.encode(texts)[1]
        delta = float(np.abs(alone - batched).max())
        if variant == "lfm2":
            assert delta < 1e-5
        else:
            assert delta > 1e-5
