"""The MLX backend against the PyTorch backend, both in fp32, on the same checkpoints and token ids."""

from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("mlx.core")
pytest.importorskip("torch")

from lfm_colbert import ColBERT  # noqa: E402
from lfm_colbert.checkpoint import load_checkpoint  # noqa: E402
from lfm_colbert.errors import InputError  # noqa: E402

pytestmark = pytest.mark.mlx

MIN_COSINE = 0.99999
QUERIES = ["what is late interaction?", "¿Qué es un motor de búsqueda?", "x"]
DOCUMENTS = [
    "ColBERT keeps one vector per token and scores a document with MaxSim over its tokens.",
    "Ein Dokument.",
    "Les moteurs de recherche classent les documents pour une requête, du plus au moins pertinent. " * 2,
    "短い文書。",
]


def min_token_cosine(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    """Worst cosine over every token of every text; vectors are unit-norm, so a dot product."""
    assert [x.shape for x in a] == [y.shape for y in b]
    return float(min((x * y).sum(-1).min() for x, y in zip(a, b)))


@pytest.fixture(scope="module", params=["lfm2.5", "lfm2"])
def pair(request, tiny_checkpoint, tiny_causal_checkpoint):
    path = tiny_checkpoint if request.param == "lfm2.5" else tiny_causal_checkpoint
    torch_model = ColBERT(path, backend="torch", dtype="float32", device="cpu")
    mlx_model = ColBERT(path, backend="mlx", dtype="float32", device="cpu")
    assert mlx_model.variant == request.param
    return torch_model, mlx_model


@pytest.mark.parametrize("is_query", [True, False], ids=["queries", "documents"])
def test_encode_matches_torch(pair, is_query):
    torch_model, mlx_model = pair
    texts = QUERIES if is_query else DOCUMENTS
    ref = torch_model.encode(texts, is_query=is_query)
    got = mlx_model.encode(texts, is_query=is_query)
    assert min_token_cosine(ref, got) >= MIN_COSINE


def test_raw_forward_on_padded_batch(pair):
    """Every position, pads included: pads are real conv inputs (LFM2.5), so they must match too."""
    torch_model, mlx_model = pair
    batch = torch_model.tokenize(DOCUMENTS, is_query=False)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert (mask == 0).any(), "the batch should contain padding"
    ref = torch_model.backend.forward(ids, mask)
    got = mlx_model.backend.forward(ids, mask)
    assert got.dtype == np.float32 and got.shape == ref.shape == (*ids.shape, 128)
    assert float((ref * got).sum(-1).min()) >= MIN_COSINE
    # Padding changes real tokens in LFM2.5 only (centred conv); the check has to be able to see it.
    single = mlx_model.backend.forward(ids[1:2, : int(mask[1].sum())], mask[1:2, : int(mask[1].sum())])
    leak = 1 - float((single[0] * got[1, : single.shape[1]]).sum(-1).min())
    if mlx_model.variant == "lfm2":
        assert leak < 1e-5  # causal: right-padding is invisible to real tokens
    else:
        assert leak > 1e-5


def test_mlx_backend_rejects_bad_options(tiny_checkpoint):
    ckpt = load_checkpoint(tiny_checkpoint)
    from lfm_colbert.models.mlx.backend import MLXBackend, has_gpu

    with pytest.raises(InputError, match="device"):
        MLXBackend(ckpt, device="cuda")
    with pytest.raises(InputError, match="dtype"):
        MLXBackend(ckpt, dtype="float64", device="cpu")
    if not has_gpu():
        with pytest.raises(InputError, match="no GPU"):
            MLXBackend(ckpt, device="gpu")
        assert MLXBackend(ckpt).dtype_name == "float32"  # CPU default: MLX's fp32 path is the fast one


def test_mlx_sanitize_is_idempotent(tiny_checkpoint):
    import mlx.core as mx

    from lfm_colbert.models.mlx.backend import load_weights
    from lfm_colbert.models.mlx.lfm2 import Model

    raw = load_weights(load_checkpoint(tiny_checkpoint))
    once = Model.sanitize(raw)
    twice = Model.sanitize(once)
    conv = "model.layers.0.conv.conv.weight"
    assert raw["layers.0.conv.conv.weight"].shape == (64, 1, 3)
    assert once[conv].shape == (64, 3, 1) and twice[conv].shape == (64, 3, 1)
    assert mx.array_equal(once[conv], twice[conv])
    assert "dense.weight" in once and "model.embed_tokens.weight" in once


@pytest.mark.slow
def test_full_size_mlx_forward(full_checkpoint):
    """The real 350M shapes (random weights) run on MLX: finite, unit-norm vectors."""
    start = time.perf_counter()
    model = ColBERT(full_checkpoint, backend="mlx", device="cpu")
    vectors = model.encode(["What is a retriever?", "LFM2.5 encodes documents token by token."])
    assert [v.shape[1] for v in vectors] == [128, 128]
    for v in vectors:
        assert 4 <= v.shape[0] <= 16
        assert np.isfinite(v).all()
        np.testing.assert_allclose(np.linalg.norm(v, axis=-1), 1.0, atol=1e-4)
    assert time.perf_counter() - start < 120
