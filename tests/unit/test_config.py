"""ModelArgs / ColBERTSettings from config files of every vintage."""

from __future__ import annotations

import copy

import pytest

from lfm_colbert.config import ColBERTSettings, ModelArgs
from lfm_colbert.errors import CheckpointError, InputError
from lfm_colbert.synthetic import REAL_CONFIG


def test_real_config_gives_the_350m_layout():
    args = ModelArgs.from_config(REAL_CONFIG)
    assert (args.hidden_size, args.num_hidden_layers, args.head_dim) == (1024, 16, 64)
    assert args.ff_dim == 4608  # int(2 * 6656 / 3) = 4437, rounded up to a multiple of 256
    assert [i for i, t in enumerate(args.layer_types) if t == "full_attention"] == [2, 5, 8, 10, 12, 14]
    assert args.rope_theta == 1e6 and args.variant == "lfm2.5" and not args.is_causal


def test_reads_config_json_of_the_shared_reference(shared_data):
    import json

    cfg = json.loads((shared_data / "lfm2-colbert-reference" / "LFM2.5-ColBERT-350M.config.json").read_text())
    args = ModelArgs.from_config(cfg)
    assert args.vocab_size == 64402 and args.ff_dim == 4608 and args.variant == "lfm2.5"


def test_old_key_names():
    cfg = copy.deepcopy(REAL_CONFIG)
    cfg["architectures"] = ["Lfm2Model"]
    del cfg["layer_types"], cfg["rope_parameters"]
    cfg["full_attn_idxs"] = [2, 5, 8, 10, 12, 14]
    cfg["rope_theta"] = 10000.0
    args = ModelArgs.from_config(cfg)
    assert args.is_causal and args.variant == "lfm2"
    assert args.layer_types == ModelArgs.from_config(REAL_CONFIG).layer_types
    assert args.rope_theta == 10000.0


def test_rope_parameters_win_over_rope_theta():
    cfg = copy.deepcopy(REAL_CONFIG)
    cfg["rope_parameters"] = {"rope_type": "default", "rope_theta": 5e5}
    cfg["rope_theta"] = 1e6
    assert ModelArgs.from_config(cfg).rope_theta == 5e5


@pytest.mark.parametrize(
    "change,message",
    [
        ({"model_type": "bert"}, "model_type"),
        ({"architectures": ["BertModel"]}, "architectures"),
        ({"layer_types": ["conv"] * 3}, "layer types"),
        ({"layer_types": ["conv"] * 15 + ["mamba"]}, "unknown layer types"),
    ],
)
def test_bad_configs(change, message):
    cfg = copy.deepcopy(REAL_CONFIG)
    cfg.update(change)
    with pytest.raises(CheckpointError, match=message):
        ModelArgs.from_config(cfg)


def test_settings_defaults_and_overrides():
    s = ColBERTSettings.from_config({"query_length": 48, "unknown_key": 1})
    assert s.query_length == 48 and s.document_length == 512 and s.query_prefix == "[Q] "
    assert s.replace(document_length=1024, query_length=None).document_length == 1024
    with pytest.raises(InputError, match="document_length"):
        s.replace(document_length=1)
