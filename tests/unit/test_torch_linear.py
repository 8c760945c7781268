"""The torch model's Linear can pre-pack its weight for oneDNN; packed or not, it must equal F.linear."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lfm_colbert.models.torch.lfm2 import Linear, pack_linears


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(1, 1, 64), (1, 8, 64), (4, 32, 64), (3, 100, 64)])
def test_packed_linear_matches_functional_linear(shape, dtype, bias):
    torch.manual_seed(0)
    layer = Linear(64, 96, bias=bias).to(dtype)
    weight, b = layer.weight.detach().clone(), None if layer.bias is None else layer.bias.detach().clone()
    x = torch.randn(*shape, dtype=dtype)
    ref = F.linear(x, weight, b)
    if not layer.pack():
        pytest.skip("this PyTorch build or CPU has no oneDNN linear for this dtype")
    assert layer.weight is None and layer.packed is not None  # replaced, not duplicated
    got = layer(x)
    assert got.shape == (*shape[:-1], 96) and got.dtype == dtype
    tol = 1e-2 if dtype == torch.bfloat16 else 1e-5
    torch.testing.assert_close(got, ref, rtol=tol, atol=tol)


def test_pack_is_a_no_op_where_onednn_cannot_run(monkeypatch):
    def unavailable(*a, **k):
        raise RuntimeError("no oneDNN")

    monkeypatch.setattr(torch.ops.mkldnn, "_reorder_linear_weight", unavailable)
    model = torch.nn.Sequential(Linear(8, 4, bias=False))
    assert pack_linears(model) == 0
    x = torch.randn(3, 8)
    torch.testing.assert_close(model(x), F.linear(x, model[0].weight))
