"""Loading checkpoints: layouts, hub ids, and a clear error for every broken one."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from lfm_colbert import ColBERT
from lfm_colbert.checkpoint import DEFAULT_MODEL, MODEL_ENV_VAR, load_checkpoint, resolve_model_path
from lfm_colbert.errors import CheckpointError


@pytest.fixture
def ckpt_copy(tiny_checkpoint, tmp_path):
    dst = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, dst)
    return dst


def test_vocab_and_ffn_width_come_from_the_weights(tiny_checkpoint):
    ckpt = load_checkpoint(tiny_checkpoint)
    emb_rows = ckpt.tensor_shapes()["model.embed_tokens.weight"][0][0]
    assert ckpt.args.vocab_size == emb_rows
    assert ckpt.args.ff_dim == ckpt.tensor_shapes()["model.layers.0.feed_forward.w1.weight"][0][0]


def test_config_vocab_size_is_corrected_from_weights(ckpt_copy):
    cfg = json.loads((ckpt_copy / "config.json").read_text())
    real = cfg["vocab_size"]
    cfg["vocab_size"] = 65536  # the base LM's padded size, as some configs say
    (ckpt_copy / "config.json").write_text(json.dumps(cfg))
    assert load_checkpoint(ckpt_copy).args.vocab_size == real


def test_env_var_points_at_a_local_copy(tiny_checkpoint, monkeypatch):
    monkeypatch.setenv(MODEL_ENV_VAR, str(tiny_checkpoint))
    path, model_id = resolve_model_path(None)
    assert path == tiny_checkpoint.resolve() and model_id == str(tiny_checkpoint.resolve())


def test_default_model_is_lfm25(monkeypatch):
    monkeypatch.delenv(MODEL_ENV_VAR, raising=False)
    calls = []
    monkeypatch.setattr("lfm_colbert.checkpoint._download", lambda repo: calls.append(repo) or "/nowhere")
    resolve_model_path(None)
    assert calls == [DEFAULT_MODEL] == ["LiquidAI/LFM2.5-ColBERT-350M"]


def test_offline_hub_error_says_how_to_point_at_a_local_copy(monkeypatch):
    import huggingface_hub

    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(CheckpointError) as err:
        ColBERT("LiquidAI/LFM2.5-ColBERT-350M")
    text = str(err.value)
    assert "LiquidAI/LFM2.5-ColBERT-350M" in text and MODEL_ENV_VAR in text and "--model" in text


def test_hub_download_asks_only_for_needed_files(monkeypatch, tiny_checkpoint):
    import huggingface_hub

    seen = []

    def fake(repo_id, allow_patterns=None, local_files_only=False):
        seen.append((repo_id, local_files_only, tuple(allow_patterns)))
        if local_files_only:
            raise FileNotFoundError("not cached")
        return str(tiny_checkpoint)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake)
    model = ColBERT("someone/some-colbert", backend="torch", dtype="float32")
    assert model.model_id == "someone/some-colbert"
    assert [s[1] for s in seen] == [True, False]  # cache first, then the network
    assert "*.safetensors" in seen[0][2] and not any("onnx" in p for p in seen[0][2])


@pytest.mark.parametrize(
    "breakage,message",
    [
        (lambda d: (d / "config.json").unlink(), "config.json is missing"),
        (lambda d: (d / "model.safetensors").unlink(), "no model.safetensors"),
        (lambda d: shutil.rmtree(d / "1_Dense"), "ColBERT head"),
        (lambda d: (d / "tokenizer.json").unlink(), "tokenizer.json"),
        (lambda d: (d / "config.json").write_text("{not json"), "not valid JSON"),
        (lambda d: (d / "model.safetensors").write_bytes(b"garbage"), "not a readable safetensors"),
    ],
)
def test_broken_checkpoints_give_one_clear_error(ckpt_copy, breakage, message):
    breakage(ckpt_copy)
    with pytest.raises(CheckpointError, match=message):
        ColBERT(ckpt_copy, backend="torch")


def _rewrite_weights(ckpt_dir, edit):
    from safetensors.numpy import load_file, save_file

    file = ckpt_dir / "model.safetensors"
    weights = load_file(str(file))
    edit(weights)
    save_file(weights, str(file))


def test_missing_tensor_is_named(ckpt_copy):
    _rewrite_weights(ckpt_copy, lambda w: w.pop("layers.2.self_attn.k_proj.weight"))
    with pytest.raises(CheckpointError, match=r"missing tensors: model\.layers\.2\.self_attn\.k_proj\.weight"):
        ColBERT(ckpt_copy, backend="torch")


def test_wrong_shape_is_named(ckpt_copy):
    def edit(w):
        w["layers.0.conv.out_proj.weight"] = np.zeros((3, 3), dtype=np.float32)

    _rewrite_weights(ckpt_copy, edit)
    with pytest.raises(CheckpointError, match=r"layers\.0\.conv\.out_proj\.weight is \[3, 3\]"):
        ColBERT(ckpt_copy, backend="torch")


def test_pickle_only_checkpoint_is_refused(ckpt_copy):
    (ckpt_copy / "model.safetensors").rename(ckpt_copy / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="no pickle"):
        ColBERT(ckpt_copy, backend="torch")


@pytest.mark.parametrize("model", ["./does/not/exist", "/abs/missing/dir", "not a hub id"])
def test_nonexistent_local_paths(model):
    with pytest.raises(CheckpointError, match="no such model directory"):
        resolve_model_path(model)


def test_a_file_instead_of_a_directory(tiny_checkpoint):
    with pytest.raises(CheckpointError, match="is a file"):
        resolve_model_path(tiny_checkpoint / "config.json")
