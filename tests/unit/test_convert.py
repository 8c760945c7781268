"""`convert`: every precision converts, loads in both backends and verifies; bad input fails cleanly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mlx.core")
torch = pytest.importorskip("torch")

from lfm_colbert import ColBERT  # noqa: E402
from lfm_colbert.checkpoint import load_checkpoint, read_safetensors_header  # noqa: E402
from lfm_colbert.convert import convert  # noqa: E402
from lfm_colbert.errors import CheckpointError, InputError  # noqa: E402
from lfm_colbert.verify import verify  # noqa: E402

PRECISIONS = ["bf16", "8bit", "4bit", "mxfp4"]
# Worst per-token cosine each precision must reach on the tiny random model (measured: bf16 ~0.9999,
# 8bit ~0.996, 4bit ~0.74, mxfp4 ~0.70; random 6-layer nets amplify weight noise).
TINY_MIN_COSINE = {"bf16": 0.999, "8bit": 0.99, "4bit": 0.6, "mxfp4": 0.55}
TEXTS = ["What is late interaction?", "ColBERT keeps one vector per token.", "x"]


@pytest.fixture(scope="module")
def bf16_source(tmp_path_factory, real_tokenizer_file) -> Path:
    """A tiny LFM2.5 checkpoint stored in bf16 like the real one, with a LICENSE file."""
    from lfm_colbert.synthetic import write_checkpoint

    path = write_checkpoint(tmp_path_factory.mktemp("src-bf16"), size="tiny", dtype="bfloat16",
                            tokenizer_file=real_tokenizer_file, seed=3)
    (path / "LICENSE").write_text("LFM Open License v1.0 (test copy)\n")
    return path


@pytest.fixture(scope="module")
def converted(bf16_source, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("converted")
    return {p: convert(bf16_source, root / p, p).path for p in PRECISIONS}


@pytest.mark.parametrize("precision", PRECISIONS)
def test_layout_config_and_card(converted, precision):
    out = converted[precision]
    names = {f.name for f in out.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "config_sentence_transformers.json",
            "README.md", "LICENSE"} <= names
    assert not (out / "1_Dense").exists()
    header = read_safetensors_header(out / "model.safetensors")
    assert header["dense.weight"] == ((128, 64), "BF16")  # the head is in the one file, unquantized
    assert header["model.layers.0.conv.conv.weight"] == ((64, 3, 1), "BF16")  # MLX conv layout
    config = json.loads((out / "config.json").read_text())
    quant = config.get("quantization")
    card = (out / "README.md").read_text()
    if precision == "bf16":
        assert quant is None
        assert all(dtype == "BF16" for _, dtype in header.values())
    else:
        assert quant["bits"] == (8 if precision == "8bit" else 4)
        assert quant["mode"] == ("mxfp4" if precision == "mxfp4" else "affine")
        assert quant["group_size"] == (32 if precision == "mxfp4" else 64)
        for path in quant["quantized"]:
            assert header[path + ".weight"][1] == "U32"
            assert (path + ".biases" in header) == (precision != "mxfp4")
        assert "model.layers.0.feed_forward.w2" in quant["quantized"]
        assert ("model.embed_tokens" in quant["quantized"]) == (precision == "8bit")
    size = (out / "model.safetensors").stat().st_size
    assert f"{size:,} bytes" in card and "Measured fidelity" in card and "LFM Open License" in card
    assert "| **all** |" in card


def test_sizes_shrink_with_bits(converted):
    sizes = {p: (converted[p] / "model.safetensors").stat().st_size for p in PRECISIONS}
    # The tiny model is embedding-heavy (64402 x 64); 8-bit quantizes it, 4-bit keeps it bf16.
    assert sizes["8bit"] < 0.6 * sizes["bf16"]
    assert sizes["4bit"] < sizes["bf16"] and sizes["mxfp4"] < sizes["bf16"]


@pytest.mark.parametrize("precision", PRECISIONS)
def test_both_backends_load_and_agree(converted, precision):
    """PyTorch dequantizes; MLX runs its quantized kernels natively. Same file, same vectors."""
    from lfm_colbert.models.mlx.backend import MLXBackend

    torch_model = ColBERT(converted[precision], backend="torch", dtype="float32", device="cpu")
    batch = torch_model.tokenize(TEXTS)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    a = torch_model.backend.forward(ids, mask)
    for dequantize in (False, True):
        b = MLXBackend(torch_model.checkpoint, dtype="float32", device="cpu", dequantize=dequantize).forward(ids, mask)
        assert float((a * b).sum(-1).min()) > 0.9999
    mlx_model = ColBERT(converted[precision], backend="mlx", dtype="float32", device="cpu")
    assert [v.shape for v in mlx_model.encode(TEXTS)] == [v.shape for v in torch_model.encode(TEXTS)]


@pytest.mark.parametrize("precision", PRECISIONS)
def test_verify_passes_with_a_fitting_threshold(converted, bf16_source, precision):
    report = verify(converted[precision], bf16_source, backend="torch", min_cosine=TINY_MIN_COSINE[precision])
    assert report.passed, report.table()
    assert report.precision == precision
    assert [s.name for s in report.sets] == ["short prompts", "queries", "passage"]
    assert report.sets[1].tokens == 6 * 32  # queries keep their expansion tokens
    assert 100 <= report.sets[2].tokens <= 160  # the ~130-token passage, minus punctuation
    # The card's numbers are the same measurement.
    card = json.dumps(report.to_dict())
    assert json.loads(card)["worst"] == pytest.approx(report.worst)


def test_verify_fails_below_threshold(converted, bf16_source):
    report = verify(converted["4bit"], bf16_source, backend="torch", min_cosine=0.99999)
    assert not report.passed and report.worst < 0.99999
    assert "FAIL" in report.table()


def test_bf16_round_trips_bit_for_bit(converted, bf16_source):
    from safetensors.torch import load_file

    from lfm_colbert.models.torch.lfm2 import Model

    original = Model.sanitize({**load_file(bf16_source / "model.safetensors"),
                               **{"1_Dense." + k: v for k, v in load_file(bf16_source / "1_Dense" / "model.safetensors").items()}})
    back = Model.sanitize(load_file(converted["bf16"] / "model.safetensors"))
    assert set(original) == set(back)
    for name, w in original.items():
        assert back[name].dtype == torch.bfloat16 and torch.equal(back[name], w), name


def test_fp32_source_is_rounded_to_bf16(tiny_checkpoint, tmp_path):
    from safetensors.torch import load_file

    out = convert(tiny_checkpoint, tmp_path / "bf16", "bf16", verify=False).path
    src = load_file(tiny_checkpoint / "model.safetensors")["embed_tokens.weight"]
    got = load_file(out / "model.safetensors")["model.embed_tokens.weight"]
    assert torch.equal(got, src.to(torch.bfloat16))


def test_converting_a_converted_checkpoint(converted, tmp_path):
    with pytest.raises(CheckpointError, match="already quantized"):
        convert(converted["4bit"], tmp_path / "again", "4bit")
    assert not (tmp_path / "again").exists()
    # A bf16 conversion is a valid source: converting it again changes nothing.
    again = convert(converted["bf16"], tmp_path / "bf16-again", "bf16", verify=False).path
    from safetensors.torch import load_file

    a, b = load_file(converted["bf16"] / "model.safetensors"), load_file(again / "model.safetensors")
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    q_from_bf16 = convert(converted["bf16"], tmp_path / "q", "4bit", verify=False).path
    c, d = load_file(converted["4bit"] / "model.safetensors"), load_file(q_from_bf16 / "model.safetensors")
    assert all(torch.equal(c[k], d[k]) for k in c)


def test_torch_loads_a_quantized_checkpoint_without_mlx(converted):
    """A Linux/Windows user with only PyTorch: block `import mlx` and load a 4-bit checkpoint."""
    code = (
        "import sys; sys.modules['mlx'] = None; sys.modules['mlx.core'] = None\n"
        "from lfm_colbert import ColBERT\n"
        f"m = ColBERT({str(converted['4bit'])!r}, backend='torch', dtype='float32', device='cpu')\n"
        "v = m.encode(['hello world'])[0]\n"
        "assert v.shape[1] == 128, v.shape\n"
        "print('ok', m.checkpoint.quantization['bits'])\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok 4"


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("kwargs,error,match", [
    ({"precision": "3bit"}, InputError, "unknown precision"),
    ({"precision": "4bit", "group_size": 128}, InputError, "does not divide"),
    ({"precision": "mxfp4", "group_size": 64}, InputError, "32"),
    ({"precision": "bf16", "group_size": 64}, InputError, "bf16"),
])
def test_bad_options_write_nothing(bf16_source, tmp_path, kwargs, error, match):
    with pytest.raises(error, match=match):
        convert(bf16_source, tmp_path / "out", verify=False, **kwargs)
    assert not (tmp_path / "out").exists() and _leftovers(tmp_path) == []


def test_source_that_is_not_an_lfm2_colbert(tmp_path):
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(CheckpointError, match="model_type"):
        convert(tmp_path / "bert", tmp_path / "out", "4bit")
    with pytest.raises(CheckpointError):
        convert(tmp_path / "missing-dir", tmp_path / "out", "4bit")
    assert not (tmp_path / "out").exists()


def test_existing_out_needs_force(bf16_source, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match="--force"):
        convert(bf16_source, out, "8bit", verify=False)
    assert (out / "keep.txt").read_text() == "mine"
    convert(bf16_source, out, "8bit", verify=False, force=True)
    assert not (out / "keep.txt").exists() and (out / "model.safetensors").is_file()
    assert _leftovers(tmp_path) == []


def test_failure_mid_write_leaves_nothing(bf16_source, tmp_path, monkeypatch):
    import lfm_colbert.convert as conv

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(conv, "_write_card", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        convert(bf16_source, tmp_path / "out", "4bit", verify=False)
    assert not (tmp_path / "out").exists() and _leftovers(tmp_path) == []


def test_upload_calls_the_hub(bf16_source, tmp_path, monkeypatch):
    import huggingface_hub

    calls = []

    class FakeApi:
        def create_repo(self, repo_id, exist_ok, private):
            calls.append(("create_repo", repo_id, exist_ok))

        def upload_folder(self, folder_path, repo_id, commit_message):
            calls.append(("upload_folder", repo_id, sorted(p.name for p in Path(folder_path).iterdir())))

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    convert(bf16_source, tmp_path / "out", "mxfp4", verify=False, upload="me/lfm-mxfp4")
    assert calls[0] == ("create_repo", "me/lfm-mxfp4", True)
    assert calls[1][0] == "upload_folder" and "model.safetensors" in calls[1][2] and "README.md" in calls[1][2]

    class FailingApi(FakeApi):
        def create_repo(self, *args, **kwargs):
            raise OSError("no network")

    monkeypatch.setattr(huggingface_hub, "HfApi", FailingApi)
    with pytest.raises(CheckpointError, match="upload to me/x failed"):
        convert(bf16_source, tmp_path / "out2", "mxfp4", verify=False, upload="me/x")
    assert (tmp_path / "out2" / "model.safetensors").is_file()  # the conversion itself is kept


def test_loading_a_converted_directory_is_the_same_call(converted):
    ckpt = load_checkpoint(converted["mxfp4"])
    assert ckpt.quantization["mode"] == "mxfp4"
    assert [prefix for prefix, _ in ckpt.weight_files] == [""]
    v = ColBERT(converted["mxfp4"], backend="torch", dtype="float32", device="cpu").encode(TEXTS, is_query=True)
    assert all(x.shape == (32, 128) and np.isfinite(x).all() for x in v)
