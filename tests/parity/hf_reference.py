"""The independent reference: transformers' `Lfm2Model` + the ColBERT Dense head, test-only.

LFM2 (causal) is the stock model. LFM2.5 is the stock model with LiquidAI's two documented
bidirectional changes applied here: a key-padding-only attention mask and a centred short conv.
In both, pad states reach the conv unzeroed (the training-time behaviour; transformers >= 5
would zero them when it builds the conv mask itself, so we pass the masks in directly).
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file


def _centred_conv1d_fn(x, weight, bias=None, activation=None, **kwargs):
    """Drop-in for transformers' `causal_conv1d_fn` with the LFM2.5 alignment (pad K//2 each side)."""
    S, K = x.shape[-1], weight.shape[-1]
    y = F.conv1d(x, weight.unsqueeze(1), bias, padding=K // 2, groups=x.shape[1])[..., :S]
    return F.silu(y) if activation in ("silu", "swish") else y


class HFReference:
    def __init__(self, ckpt_dir: Path, dtype: torch.dtype = torch.float32, attn: str = "eager", device: str = "cpu"):
        from transformers import Lfm2Config, Lfm2Model

        cfg = json.loads((Path(ckpt_dir) / "config.json").read_text())
        self.bidirectional = "Lfm2BidirectionalModel" in cfg.get("architectures", [])
        config = Lfm2Config(**{k: v for k, v in cfg.items() if k not in ("architectures", "auto_map")})
        config._attn_implementation = attn
        self.model = Lfm2Model(config).eval()
        missing, unexpected = self.model.load_state_dict(load_file(Path(ckpt_dir) / "model.safetensors"), strict=False)
        assert not unexpected and all("rotary" in k for k in missing), (missing, unexpected)
        dense_w = load_file(Path(ckpt_dir) / "1_Dense" / "model.safetensors")["linear.weight"]
        self.dense = torch.nn.Linear(dense_w.shape[1], dense_w.shape[0], bias=False)
        self.dense.weight.data.copy_(dense_w)
        # As from_pretrained(dtype=...) leaves them, which is how PyLate loads a bf16 model, the rotary
        # frequencies stay fp32: `.to(dtype)` alone would round them too (errors up to 1e-3).
        rotary = [m for m in self.model.modules() if "RotaryEmbedding" in type(m).__name__]
        inv_freqs = [m.inv_freq.clone() for m in rotary]
        self.model.to(device=device, dtype=dtype)
        self.dense.to(device=device, dtype=dtype)
        for module, inv_freq in zip(rotary, inv_freqs):
            module.inv_freq = inv_freq.to(device)
        self.dtype, self.device = dtype, torch.device(device)

    @contextlib.contextmanager
    def _patched(self):
        import transformers.models.lfm2.modeling_lfm2 as m

        if not self.bidirectional:
            yield
            return
        saved = m.causal_conv1d_fn
        m.causal_conv1d_fn = _centred_conv1d_fn
        try:
            yield
        finally:
            m.causal_conv1d_fn = saved

    def mask(self, attention_mask: torch.Tensor) -> torch.Tensor:
        """Additive (B, 1, S, S) fp32 mask: key padding, plus causality for LFM2."""
        B, S = attention_mask.shape
        allowed = attention_mask.bool()[:, None, None, :].expand(B, 1, S, S)
        if not self.bidirectional:
            allowed = allowed & torch.ones(S, S, dtype=torch.bool, device=allowed.device).tril()
        neg = torch.finfo(self.dtype).min
        return torch.zeros(B, 1, S, S, dtype=self.dtype, device=allowed.device).masked_fill(~allowed, neg)

    @torch.inference_mode()
    def __call__(self, input_ids, attention_mask) -> torch.Tensor:
        """(B, S) -> (B, S, 128) fp32 L2-normalised on the CPU, every position (pads included)."""
        ids = torch.as_tensor(input_ids).to(self.device)
        am = torch.as_tensor(attention_mask).to(self.device)
        with self._patched():
            h = self.model(input_ids=ids, attention_mask={"full_attention": self.mask(am), "conv": None}).last_hidden_state
        return F.normalize(self.dense(h).float(), dim=-1).cpu()
