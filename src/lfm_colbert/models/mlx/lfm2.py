"""LFM2 / LFM2.5 ColBERT encoder in MLX (model_type "lfm2").

Mirrors `lfm_colbert/models/torch/lfm2.py` module for module, with the same weight names.
Shapes: B batch, S sequence, H hidden (1024), F FFN (4608), nh/nkv heads (16/8), d head dim (64).
MLX layouts differ in two places: activations stay (B, S, H) through the conv (NLC), and the
depthwise conv weight is (H, K, 1) instead of PyTorch's (H, 1, K).
"""

from __future__ import annotations

import math

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from lfm_colbert.checkpoint import canonical_name
from lfm_colbert.config import ModelArgs

# nn.RMSNorm is `weight * x / sqrt(mean(x^2) + eps)` with fp32 accumulation (mx.fast.rms_norm).
RMSNorm = nn.RMSNorm


class Attention(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        H, d = args.hidden_size, args.head_dim
        self.n_heads, self.n_kv_heads, self.head_dim = args.num_attention_heads, args.num_key_value_heads, d
        self.scale = d**-0.5
        self.q_proj = nn.Linear(H, self.n_heads * d, bias=False)
        self.k_proj = nn.Linear(H, self.n_kv_heads * d, bias=False)
        self.v_proj = nn.Linear(H, self.n_kv_heads * d, bias=False)
        self.out_proj = nn.Linear(self.n_heads * d, H, bias=False)
        self.q_layernorm = RMSNorm(d, args.norm_eps)
        self.k_layernorm = RMSNorm(d, args.norm_eps)
        # Non-interleaved (NeoX) rotary embedding; positions 0..S-1 regardless of padding.
        self.rope = nn.RoPE(d, traditional=False, base=args.rope_theta)

    def __call__(self, x: mx.array, mask: mx.array) -> mx.array:
        B, S, _ = x.shape
        q = self.q_layernorm(self.q_proj(x).reshape(B, S, self.n_heads, self.head_dim)).transpose(0, 2, 1, 3)  # (B, nh, S, d)
        k = self.k_layernorm(self.k_proj(x).reshape(B, S, self.n_kv_heads, self.head_dim)).transpose(0, 2, 1, 3)  # (B, nkv, S, d)
        v = self.v_proj(x).reshape(B, S, self.n_kv_heads, self.head_dim).transpose(0, 2, 1, 3)
        q, k = self.rope(q), self.rope(k)
        # GQA: sdpa takes the nkv heads as they are, no repeat needed.
        o = mx.fast.scaled_dot_product_attention(q, k, v, scale=self.scale, mask=mask)
        return self.out_proj(o.transpose(0, 2, 1, 3).reshape(B, S, -1))  # (B, S, H)


class ShortConv(nn.Module):
    """Gated depthwise conv: out_proj(C * conv(B * x)). Centred in LFM2.5, causal in LFM2."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        H, K = args.hidden_size, args.conv_L_cache
        self.kernel_size, self.is_causal = K, args.is_causal
        self.in_proj = nn.Linear(H, 3 * H, bias=args.conv_bias)
        self.conv = nn.Conv1d(H, H, kernel_size=K, groups=H, bias=args.conv_bias)  # weight (H, K, 1)
        self.out_proj = nn.Linear(H, H, bias=args.conv_bias)

    def __call__(self, x: mx.array) -> mx.array:
        S, K = x.shape[1], self.kernel_size
        b, c, h = mx.split(self.in_proj(x), 3, axis=-1)  # 3 x (B, S, H)
        bx = b * h
        # Pads are real inputs here (not zeroed), as in the trained models.
        left = K - 1 if self.is_causal else K // 2
        xp = mx.pad(bx, [(0, 0), (left, K - 1 - left), (0, 0)])  # (B, S + K - 1, H)
        # y[t] = sum_k w[k] * bx[t + k - left], as K shifted multiply-adds: on the CPU they are ~6x
        # faster than MLX's depthwise Conv1d (machine-notes section 1), as in the PyTorch model.
        w = self.conv.weight[:, :, 0]  # (H, K)
        y = xp[:, :S] * w[:, 0]
        for k in range(1, K):
            y = y + xp[:, k : k + S] * w[:, k]
        return self.out_proj(c * y)  # (B, S, H)


class MLP(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.w1 = nn.Linear(args.hidden_size, args.ff_dim, bias=False)
        self.w3 = nn.Linear(args.hidden_size, args.ff_dim, bias=False)
        self.w2 = nn.Linear(args.ff_dim, args.hidden_size, bias=False)

    def __call__(self, x: mx.array) -> mx.array:
        return self.w2(nn.silu(self.w1(x)) * self.w3(x))  # (B, S, F) -> (B, S, H)


class DecoderLayer(nn.Module):
    def __init__(self, args: ModelArgs, layer_type: str):
        super().__init__()
        self.is_attention = layer_type == "full_attention"
        if self.is_attention:
            self.self_attn = Attention(args)
        else:
            self.conv = ShortConv(args)
        self.operator_norm = RMSNorm(args.hidden_size, args.norm_eps)
        self.ffn_norm = RMSNorm(args.hidden_size, args.norm_eps)
        self.feed_forward = MLP(args)

    def __call__(self, x: mx.array, mask: mx.array) -> mx.array:
        h = self.operator_norm(x)
        x = x + (self.self_attn(h, mask) if self.is_attention else self.conv(h))
        return x + self.feed_forward(self.ffn_norm(x))


class Lfm2Model(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.args = args
        self.embed_tokens = nn.Embedding(args.vocab_size, args.hidden_size)
        self.layers = [DecoderLayer(args, t) for t in args.layer_types]
        self.embedding_norm = RMSNorm(args.hidden_size, args.norm_eps)  # the final norm, despite its name
        # (RoPE lives in each Attention: nn.RoPE has no weights, so no name is added.)

    def __call__(self, input_ids: mx.array, attention_mask: mx.array) -> mx.array:
        x = self.embed_tokens(input_ids)  # (B, S, H)
        mask = attention_mask_4d(attention_mask, self.args.is_causal)
        for layer in self.layers:
            x = layer(x, mask)
        return self.embedding_norm(x)


def attention_mask_4d(attention_mask: mx.array, is_causal: bool) -> mx.array:
    """Boolean (B, 1, S|1, S) mask, True = may attend. Key padding only, plus causality for LFM2."""
    keys = (attention_mask != 0)[:, None, None, :]  # (B, 1, 1, S)
    if not is_causal:
        return keys
    S = attention_mask.shape[1]
    causal = mx.tril(mx.ones((S, S), dtype=mx.bool_))
    return keys & causal  # (B, 1, S, S); BOS is real, so no row is fully masked


class Model(nn.Module):
    """Backbone + the 1024->128 ColBERT Dense head + per-token L2 normalisation."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.args = args
        self.model = Lfm2Model(args)
        self.dense = nn.Linear(args.hidden_size, args.out_features, bias=False)

    def __call__(self, input_ids: mx.array, attention_mask: mx.array) -> mx.array:
        h = self.model(input_ids, attention_mask)  # (B, S, H)
        e = self.dense(h).astype(mx.float32)  # (B, S, 128)
        norm = mx.sqrt(mx.sum(e * e, axis=-1, keepdims=True))
        return e / mx.maximum(norm, 1e-12)

    @staticmethod
    def sanitize(weights: dict[str, mx.array]) -> dict[str, mx.array]:
        """Checkpoint names -> module names; PyTorch conv layout (H, 1, K) -> MLX (H, K, 1)."""
        out = {}
        for name, w in weights.items():
            name = canonical_name(name)
            # Idempotent: an (H, K, 1) weight has shape[-1] < shape[1] and is left alone.
            if name.endswith("conv.conv.weight") and w.ndim == 3 and w.shape[-1] > w.shape[1]:
                w = w.transpose(0, 2, 1)
            out[name] = w
        return out


def param_count(model: nn.Module) -> int:
    return sum(math.prod(p.shape) for _, p in tree_flatten(model.parameters()))
