"""Synthetic checkpoints in the exact PyLate / sentence-transformers layout, with random weights.

Tests and benchmarks run on these where the real weights cannot be downloaded. The layout,
names, dtypes and configs are the real ones; only the numbers in the tensors are random.

    write_checkpoint(dir, size="tiny")                       # 6 layers, hidden 64: for tests
    write_checkpoint(dir, size="full", dtype="bfloat16")     # the real 350M shapes: for benchmarks
"""

from __future__ import annotations

import copy
import json
import os
import string
from pathlib import Path
from typing import Any

import numpy as np

# The LFM2.5-ColBERT-350M config.json (as published), used when no real copy is passed in.
REAL_CONFIG: dict[str, Any] = {
    "architectures": ["Lfm2BidirectionalModel"],
    "auto_map": {"AutoModel": "modeling_lfm2_bidirectional.Lfm2BidirectionalModel"},
    "block_auto_adjust_ff_dim": True,
    "block_dim": 1024,
    "block_ff_dim": 6656,
    "block_ffn_dim_multiplier": 1.0,
    "block_multiple_of": 256,
    "block_norm_eps": 1e-05,
    "bos_token_id": 1,
    "conv_L_cache": 3,
    "conv_bias": False,
    "conv_dim": 1024,
    "disable_flash_attention": True,
    "dtype": "bfloat16",
    "eos_token_id": 7,
    "hidden_size": 1024,
    "intermediate_size": 6656,
    "layer_types": ["conv", "conv", "full_attention", "conv", "conv", "full_attention", "conv", "conv",
                    "full_attention", "conv", "full_attention", "conv", "full_attention", "conv",
                    "full_attention", "conv"],
    "max_position_embeddings": 128000,
    "model_type": "lfm2",
    "norm_eps": 1e-05,
    "num_attention_heads": 16,
    "num_heads": 16,
    "num_hidden_layers": 16,
    "num_key_value_heads": 8,
    "pad_token_id": 0,
    "rope_parameters": {"rope_theta": 1000000.0, "rope_type": "default"},
    "rope_theta": 1000000.0,
    "tie_embedding": True,
    "vocab_size": 64402,
}

# A shrunken copy for fast tests: same structure (conv and attention layers, GQA, auto-adjusted FFN).
TINY_OVERRIDES: dict[str, Any] = {
    "hidden_size": 64,
    "block_dim": 64,
    "conv_dim": 64,
    "intermediate_size": 192,  # -> ff_dim 128 after auto-adjust with multiple_of 32
    "block_ff_dim": 192,
    "block_multiple_of": 32,
    "num_hidden_layers": 6,
    "layer_types": ["conv", "conv", "full_attention", "conv", "full_attention", "conv"],
    "num_attention_heads": 4,
    "num_heads": 4,
    "num_key_value_heads": 2,
}

SENTENCE_TRANSFORMERS_CONFIG: dict[str, Any] = {
    "query_prefix": "[Q] ",
    "document_prefix": "[D] ",
    "query_length": 32,
    "document_length": 512,
    "attend_to_expansion_tokens": False,
    "do_query_expansion": True,
    "skiplist_words": list(string.punctuation),
    "similarity_fn_name": "MaxSim",
    "prompts": {},
    "default_prompt_name": None,
}

MODULES = [
    {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
    {"idx": 1, "name": "1", "path": "1_Dense", "type": "pylate.models.Dense.Dense"},
]

SPECIAL_TOKENS = ["<|pad|>", "<|startoftext|>", "<|endoftext|>", "<|fim_pre|>", "<|fim_mid|>",
                  "<|fim_suf|>", "<|im_start|>", "<|im_end|>"]


def model_config(size: str = "tiny", variant: str = "lfm2.5", base: dict[str, Any] | None = None) -> dict[str, Any]:
    """The config.json for a synthetic checkpoint: the real one, shrunk for `size="tiny"`."""
    if size not in ("tiny", "full"):
        raise ValueError(f"size must be 'tiny' or 'full', got {size!r}")
    if variant not in ("lfm2.5", "lfm2"):
        raise ValueError(f"variant must be 'lfm2.5' or 'lfm2', got {variant!r}")
    cfg = copy.deepcopy(base or REAL_CONFIG)
    if size == "tiny":
        cfg.update(copy.deepcopy(TINY_OVERRIDES))
    if variant == "lfm2":
        # The original LFM2-ColBERT-350M: a plain causal Lfm2Model.
        cfg["architectures"] = ["Lfm2Model"]
        cfg.pop("auto_map", None)
        cfg.pop("disable_flash_attention", None)
    return cfg


def random_weights(cfg: dict[str, Any], seed: int = 0, out_features: int = 128) -> dict[str, np.ndarray]:
    """Random float32 weights with the checkpoint's names (unprefixed backbone + `1_Dense.linear.weight`)."""
    from lfm_colbert.checkpoint import expected_shapes
    from lfm_colbert.config import ModelArgs

    args = ModelArgs.from_config(cfg)
    rng = np.random.default_rng(seed)
    weights = {}
    for name, shape in expected_shapes(args).items():
        if name.endswith("norm.weight") or name.endswith("layernorm.weight"):
            w = 1.0 + 0.1 * rng.standard_normal(shape, dtype=np.float32)
        elif name.endswith("conv.conv.weight"):
            w = 0.5 * rng.standard_normal(shape, dtype=np.float32)
        elif name.endswith("embed_tokens.weight"):
            w = rng.standard_normal(shape, dtype=np.float32)
        else:  # Linear (out, in): unit-variance outputs so every block changes the result
            w = rng.standard_normal(shape, dtype=np.float32) / np.float32(np.sqrt(shape[-1]))
        key = "1_Dense.linear.weight" if name == "dense.weight" else name.removeprefix("model.")
        weights[key] = w
    return weights


def write_checkpoint(
    out_dir: str | os.PathLike,
    *,
    size: str = "tiny",
    variant: str = "lfm2.5",
    seed: int = 0,
    dtype: str = "float32",
    tokenizer_file: str | os.PathLike | None = None,
    base_config: dict[str, Any] | None = None,
) -> Path:
    """Write a random-weight checkpoint in PyLate's layout to `out_dir` and return its path.

    `tokenizer_file`: the real LFM2 tokenizer.json; None trains a small byte-level BPE tokenizer
    with the same special tokens (ids 0-7), so tests run without the real one.
    """
    out = Path(out_dir)
    (out / "1_Dense").mkdir(parents=True, exist_ok=True)
    tok = _load_or_train_tokenizer(tokenizer_file)
    cfg = model_config(size, variant, base_config)
    cfg["vocab_size"] = tok.get_vocab_size(with_added_tokens=True)
    cfg["dtype"] = dtype
    weights = random_weights(cfg, seed=seed)
    dense = {"linear.weight": weights.pop("1_Dense.linear.weight")}
    _save(weights, out / "model.safetensors", dtype)
    _save(dense, out / "1_Dense" / "model.safetensors", dtype)
    _write_json(out / "config.json", cfg)
    _write_json(out / "1_Dense" / "config.json", {
        "in_features": cfg["hidden_size"], "out_features": dense["linear.weight"].shape[0], "bias": False,
        "activation_function": "torch.nn.modules.linear.Identity", "use_residual": False,
    })
    _write_json(out / "modules.json", MODULES)
    _write_json(out / "config_sentence_transformers.json", SENTENCE_TRANSFORMERS_CONFIG)
    _write_json(out / "sentence_bert_config.json", {"max_seq_length": 511, "do_lower_case": False})
    tok.save(str(out / "tokenizer.json"))
    _write_json(out / "tokenizer_config.json", {
        "bos_token": "<|startoftext|>", "eos_token": "<|im_end|>", "pad_token": "<|im_end|>",
        "padding_side": "right", "model_max_length": 1000000000000000019884624838656,
    })
    return out


def _save(weights: dict[str, np.ndarray], file: Path, dtype: str) -> None:
    if dtype == "float32":
        from safetensors.numpy import save_file

        save_file(weights, str(file))
    elif dtype in ("bfloat16", "float16"):
        import torch  # numpy has no bfloat16
        from safetensors.torch import save_file

        save_file({k: torch.from_numpy(v).to(getattr(torch, dtype)) for k, v in weights.items()}, str(file))
    else:
        raise ValueError(f"dtype must be float32, bfloat16 or float16, got {dtype!r}")


def _write_json(file: Path, data: Any) -> None:
    file.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _load_or_train_tokenizer(tokenizer_file: str | os.PathLike | None):
    from tokenizers import AddedToken, Tokenizer

    if tokenizer_file is not None:
        tok = Tokenizer.from_file(str(tokenizer_file))
    else:
        tok = train_tiny_tokenizer()
    # PyLate adds the prefixes as tokens and saves them with the tokenizer.
    for prefix in ("[Q] ", "[D] "):
        if tok.token_to_id(prefix) is None:
            tok.add_tokens([AddedToken(prefix)])
    return tok


_TRAINING_TEXT = """
The quick brown fox jumps over the lazy dog. Search engines rank documents for a query.
El rápido zorro marrón salta sobre el perro perezoso. Los motores de búsqueda ordenan documentos.
Der schnelle braune Fuchs springt über den faulen Hund. Suchmaschinen ordnen Dokumente.
Le renard brun rapide saute par-dessus le chien paresseux. Les moteurs de recherche classent.
La volpe marrone salta sopra il cane pigro. O rápido raposo salta sobre o cão preguiçoso.
الثعلب البني السريع يقفز فوق الكلب الكسول. محركات البحث ترتب الوثائق.
Den snabba bruna räven hoppar över den lata hunden. Den raske brune reven hopper over hunden.
素早い茶色の狐が怠け者の犬を飛び越える。検索エンジンは文書を順位付けする。
빠른 갈색 여우가 게으른 개를 뛰어넘는다. 검색 엔진은 문서의 순위를 매긴다.
敏捷的棕色狐狸跳过了懒狗。搜索引擎对文档进行排序。
"""


def train_tiny_tokenizer(vocab_size: int = 2000):
    """A small byte-level BPE tokenizer with LFM2's special tokens at ids 0-7 and BOS prepended."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_TRAINING_TEXT.strip().splitlines() * 4, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A", special_tokens=[("<|startoftext|>", 1)]
    )
    return tok
