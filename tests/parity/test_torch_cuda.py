"""The PyTorch backend on CUDA: the reference's outputs in fp32, close to them in bf16 and fp16,
and transformers' own outputs when both run in the same half dtype on the GPU.

CI has no GPU, so these skip there; on a machine with one, `pytest tests/parity/test_torch_cuda.py`.
The fp32 reference runs on the CPU, so a difference between devices shows up as well.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hf_reference import HFReference
from parity_texts import DOCS, QUERIES
from lfm_colbert import ColBERT

pytest.importorskip("transformers")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (CI has none)")

# Worst per-token cosine to the fp32 reference, measured on an H100 with the tiny checkpoints: bf16
# 0.99928 / 0.99932, fp16 0.99999. The bounds leave rounding room; a wrong mask or conv alignment
# gives cosines near 0.9 or below.
HALF_MIN_COS = {"bfloat16": 0.998, "float16": 0.9999}


@pytest.fixture(scope="module", params=["lfm2.5", "lfm2"])
def checkpoint(request, tiny_checkpoint, tiny_causal_checkpoint):
    return tiny_checkpoint if request.param == "lfm2.5" else tiny_causal_checkpoint


@pytest.fixture(scope="module")
def reference(checkpoint):
    return HFReference(checkpoint)  # fp32, CPU


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


@pytest.mark.parametrize("is_query", [False, True])
def test_cuda_fp32_matches_reference(checkpoint, reference, is_query):
    model = ColBERT(checkpoint, backend="torch", dtype="float32", device="cuda")
    tok = model.tokenize(QUERIES if is_query else DOCS, is_query=is_query)
    assert (tok["attention_mask"] == 0).any(), "the batch must contain padding"
    ours = model.backend.forward(tok["input_ids"], tok["attention_mask"])
    theirs = reference(tok["input_ids"], tok["attention_mask"]).numpy()
    assert cosines(ours, theirs).min() >= 0.99999  # every position, pads included


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_cuda_half_precision_close_to_fp32(checkpoint, reference, dtype):
    model = ColBERT(checkpoint, backend="torch", dtype=dtype, device="cuda")
    assert next(model.backend.model.parameters()).dtype == getattr(torch, dtype)
    tok = model.tokenize(DOCS, is_query=False)
    ours = model.backend.forward(tok["input_ids"], tok["attention_mask"])
    theirs = reference(tok["input_ids"], tok["attention_mask"]).numpy()
    keep = tok["attention_mask"].astype(bool)
    assert np.isfinite(ours).all()
    worst = cosines(ours, theirs)[keep].min()
    print(f"{dtype} on CUDA vs fp32 reference: min cos {worst:.5f}")
    assert worst >= HALF_MIN_COS[dtype]


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_cuda_half_precision_matches_reference_in_same_dtype(checkpoint, dtype):
    """Against transformers loaded in the same dtype on the GPU (as PyLate runs there)."""
    model = ColBERT(checkpoint, backend="torch", dtype=dtype, device="cuda")
    ref = HFReference(checkpoint, dtype=getattr(torch, dtype), attn="sdpa", device="cuda")
    tok = model.tokenize(DOCS, is_query=False)
    ours = model.backend.forward(tok["input_ids"], tok["attention_mask"])
    theirs = ref(tok["input_ids"], tok["attention_mask"]).numpy()
    worst = cosines(ours, theirs)[tok["attention_mask"].astype(bool)].min()
    print(f"{dtype} on CUDA vs transformers {dtype} on CUDA: min cos {worst:.6f}")
    assert worst >= 0.9999


def test_encode_on_cuda_equals_cpu(checkpoint):
    """The whole encode path (length-sorted batches, skiplist, query expansion) gives the CPU's vectors."""
    gpu = ColBERT(checkpoint, backend="torch", dtype="float32", device="cuda")
    cpu = ColBERT(checkpoint, backend="torch", dtype="float32", device="cpu")
    for is_query, texts in [(False, DOCS), (True, QUERIES)]:
        a = gpu.encode(texts, is_query=is_query, batch_size=2)
        b = cpu.encode(texts, is_query=is_query, batch_size=2)
        for x, y in zip(a, b):
            assert x.shape == y.shape
            assert cosines(x, y).min() >= 0.99999


def test_cuda_default_dtype_is_half(checkpoint):
    model = ColBERT(checkpoint, backend="torch", device="cuda")
    expected = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    assert model.backend.dtype_name == expected


@pytest.mark.slow
def test_full_size_cuda_bf16(full_checkpoint):
    """The real 350M shapes in bf16 on the GPU: weights held once, in bf16, and outputs close to fp32."""
    torch.cuda.empty_cache()
    before = torch.cuda.memory_allocated()
    model = ColBERT(full_checkpoint, backend="torch", dtype="bfloat16", device="cuda")
    held = torch.cuda.memory_allocated() - before
    assert held < 1.1 * 353_453_824 * 2  # no fp32 copy (1.4 GB) left behind on the device
    texts = ["Penguins live in the southern hemisphere.", "東京は日本の首都です。" * 20]
    tok = model.tokenize(texts, is_query=False)
    ours = model.backend.forward(tok["input_ids"], tok["attention_mask"])
    exact = ColBERT(full_checkpoint, backend="torch", dtype="float32", device="cuda")
    ref = exact.backend.forward(tok["input_ids"], tok["attention_mask"])
    keep = tok["attention_mask"].astype(bool)
    assert np.isfinite(ours).all()
    np.testing.assert_allclose(np.linalg.norm(ours, axis=-1), 1.0, atol=1e-5)
    worst = cosines(ours, ref)[keep].min()
    print(f"full-size bf16 vs fp32 on CUDA: min cos {worst:.5f}")
    assert worst >= 0.995  # 0.99897 measured on an H100
