"""Model and ColBERT settings, read from a checkpoint's JSON files.

`ModelArgs` comes from `config.json` (the LFM2 backbone); `ColBERTSettings` from
`config_sentence_transformers.json` (PyLate's query/document conventions).
"""

from __future__ import annotations

import dataclasses
import string
from dataclasses import dataclass, field
from typing import Any

from lfm_colbert.errors import CheckpointError, InputError

BIDIRECTIONAL_ARCHS = {"Lfm2BidirectionalModel", "Lfm2BidirectionalForMaskedLM"}
CAUSAL_ARCHS = {"Lfm2Model", "Lfm2ForCausalLM"}


@dataclass
class ModelArgs:
    """The LFM2 backbone hyper-parameters, normalised across config versions."""

    vocab_size: int = 64402
    hidden_size: int = 1024
    num_hidden_layers: int = 16
    num_attention_heads: int = 16
    num_key_value_heads: int = 8
    intermediate_size: int = 6656  # pre-adjustment value; see `ff_dim`
    block_auto_adjust_ff_dim: bool = True
    block_ffn_dim_multiplier: float | None = 1.0
    block_multiple_of: int = 256
    conv_L_cache: int = 3
    conv_bias: bool = False
    norm_eps: float = 1e-5
    rope_theta: float = 1_000_000.0
    layer_types: list[str] = field(default_factory=list)
    is_causal: bool = False  # LFM2-ColBERT (Lfm2Model) is causal; LFM2.5 is bidirectional
    out_features: int = 128  # the ColBERT Dense head

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def variant(self) -> str:
        return "lfm2" if self.is_causal else "lfm2.5"

    @property
    def ff_dim(self) -> int:
        """The real FFN width (4608 for the 350M models) from the auto-adjust rule."""
        ff = self.intermediate_size
        if self.block_auto_adjust_ff_dim:
            ff = int(2 * ff / 3)
            if self.block_ffn_dim_multiplier is not None:
                ff = int(self.block_ffn_dim_multiplier * ff)
            m = self.block_multiple_of
            ff = m * ((ff + m - 1) // m)
        return ff

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> "ModelArgs":
        """Build from an HF `config.json` dict, tolerating both old and new key names."""
        if cfg.get("model_type") not in (None, "lfm2", "lfm2_bidirectional"):
            raise CheckpointError(
                f"config.json has model_type={cfg.get('model_type')!r}; expected 'lfm2' "
                "(LFM2-ColBERT-350M or LFM2.5-ColBERT-350M)"
            )
        archs = set(cfg.get("architectures") or [])
        if archs & BIDIRECTIONAL_ARCHS or cfg.get("model_type") == "lfm2_bidirectional":
            is_causal = False
        elif archs & CAUSAL_ARCHS:
            is_causal = True
        else:
            raise CheckpointError(
                f"config.json architectures={sorted(archs)} is neither Lfm2BidirectionalModel "
                "(LFM2.5-ColBERT) nor Lfm2Model (LFM2-ColBERT)"
            )
        hidden = int(cfg.get("hidden_size", cfg.get("block_dim", 1024)))
        n_layers = int(cfg.get("num_hidden_layers", 16))
        layer_types = cfg.get("layer_types")
        if layer_types is None:
            # Older configs list attention layer indices instead of per-layer types.
            attn = set(cfg.get("full_attn_idxs") or [])
            if not attn:
                raise CheckpointError("config.json has neither 'layer_types' nor 'full_attn_idxs'")
            layer_types = ["full_attention" if i in attn else "conv" for i in range(n_layers)]
        if len(layer_types) != n_layers:
            raise CheckpointError(
                f"config.json lists {len(layer_types)} layer types for {n_layers} layers"
            )
        unknown = set(layer_types) - {"conv", "full_attention"}
        if unknown:
            raise CheckpointError(f"config.json has unknown layer types {sorted(unknown)}")
        rope = cfg.get("rope_parameters") or {}
        rope_theta = rope.get("rope_theta", cfg.get("rope_theta", cfg.get("theta", 1_000_000.0)))
        return cls(
            vocab_size=int(cfg.get("vocab_size", 64402)),
            hidden_size=hidden,
            num_hidden_layers=n_layers,
            num_attention_heads=int(cfg.get("num_attention_heads", cfg.get("num_heads", 16))),
            num_key_value_heads=int(cfg.get("num_key_value_heads", 8)),
            intermediate_size=int(cfg.get("intermediate_size", cfg.get("block_ff_dim", 6656))),
            block_auto_adjust_ff_dim=bool(cfg.get("block_auto_adjust_ff_dim", True)),
            block_ffn_dim_multiplier=cfg.get("block_ffn_dim_multiplier", 1.0),
            block_multiple_of=int(cfg.get("block_multiple_of", 256)),
            conv_L_cache=int(cfg.get("conv_L_cache", 3)),
            conv_bias=bool(cfg.get("conv_bias", False)),
            norm_eps=float(cfg.get("norm_eps", cfg.get("block_norm_eps", 1e-5))),
            rope_theta=float(rope_theta),
            layer_types=list(layer_types),
            is_causal=is_causal,
        )


@dataclass
class ColBERTSettings:
    """PyLate's ColBERT conventions (`config_sentence_transformers.json`), with PyLate's defaults."""

    query_prefix: str = "[Q] "
    document_prefix: str = "[D] "
    query_length: int = 32
    document_length: int = 512
    do_query_expansion: bool = True
    attend_to_expansion_tokens: bool = False
    skiplist_words: list[str] = field(default_factory=lambda: list(string.punctuation))

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> "ColBERTSettings":
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in cfg.items() if k in known and v is not None}
        settings = cls(**kwargs)
        settings.validate()
        return settings

    def replace(self, **overrides: Any) -> "ColBERTSettings":
        """A copy with the non-None overrides applied and checked."""
        new = dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})
        new.validate()
        return new

    def validate(self) -> None:
        # BOS + prefix + at least one text token.
        for name in ("query_length", "document_length"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 3:
                raise InputError(f"{name} must be an integer >= 3, got {value!r}")
