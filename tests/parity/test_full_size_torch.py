"""One forward of the full-size model (the real LFM2.5 config: 350M parameters) in the PyTorch backend."""

from __future__ import annotations

import numpy as np
import pytest

from lfm_colbert import ColBERT
from lfm_colbert.checkpoint import load_checkpoint
from lfm_colbert.models.torch.lfm2 import param_count


@pytest.mark.slow
def test_full_size_torch_forward(full_checkpoint):
    ckpt = load_checkpoint(full_checkpoint)
    assert ckpt.args.ff_dim == 4608 and ckpt.args.vocab_size == 64402
    model = ColBERT(full_checkpoint, backend="torch", dtype="float32", device="cpu")
    n_params = param_count(model.backend.model)  # counts pre-packed CPU weights too
    assert n_params == 353_453_824  # the published 353.5M (model-spec section 1.2)
    docs = model.encode(["Penguins live in the southern hemisphere.", "東京は日本の首都です。"])
    (query,) = model.encode(["where do penguins live"], is_query=True)
    for v in docs + [query]:
        assert np.isfinite(v).all()
        np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert query.shape == (32, 128)
