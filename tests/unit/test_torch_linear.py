"""The torch model's Linear switches GEMM orientation by row count; every branch must equal F.linear."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lfm_colbert.models.torch.lfm2 import Linear


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(1, 8, 64), (2, 16, 64), (4, 32, 64), (3, 100, 64)])  # 8, 32, 128, 300 rows
def test_linear_matches_functional_linear(shape, dtype):
    torch.manual_seed(0)
    layer = Linear(64, 96, bias=False).to(dtype)
    x = torch.randn(*shape, dtype=dtype)
    got = layer(x)
    assert got.shape == (*shape[:-1], 96) and got.is_contiguous()
    torch.testing.assert_close(got, F.linear(x, layer.weight), rtol=1e-2 if dtype == torch.bfloat16 else 1e-5,
                               atol=1e-2 if dtype == torch.bfloat16 else 1e-5)
