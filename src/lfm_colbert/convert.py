"""Convert an LFM2 / LFM2.5 ColBERT checkpoint into a self-contained MLX checkpoint.

    OUT/
      config.json                      the backbone config (+ a `quantization` block unless bf16)
      model.safetensors                one file, MLX layout: canonical names, conv weights (H, K, 1),
                                       the Dense head as `dense.weight`
      tokenizer.json, tokenizer_config.json, config_sentence_transformers.json, ...
      README.md                        model card: sizes, precision, recipe, measured fidelity
      LICENSE                          copied from the source when it has one

Both backends load OUT with the same call as the original (8-bit and 4-bit natively; mxfp4 dequantized to bf16 in PyTorch).
Everything is written to a temporary directory beside OUT and renamed into place at the end.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Callable

from lfm_colbert.checkpoint import Checkpoint, load_checkpoint, validate_shapes
from lfm_colbert.errors import CheckpointError, InputError
from lfm_colbert.quantization import PRECISIONS, check_params, quantizable_modules, quantize_mlx

logger = logging.getLogger(__name__)

# Copied from the source when present (the tokenizer, ColBERT settings and license).
SIDE_FILES = [
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
    "config_sentence_transformers.json", "sentence_bert_config.json",
]
LICENSE_FILES = ["LICENSE", "LICENSE.md", "LICENSE.txt"]
# Whether the token embedding is quantized by default: measured in bench/quantize.py (see the card).
DEFAULT_QUANTIZE_EMBEDDING = {"8bit": True, "4bit": False, "mxfp4": False}


@dataclass
class ConvertResult:
    path: Path
    precision: str
    weights_bytes: int
    total_bytes: int
    quantization: dict[str, Any] | None
    fidelity: dict[str, Any] | None


def convert(
    src: str | os.PathLike,
    out: str | os.PathLike,
    precision: str = "bf16",
    *,
    group_size: int | None = None,
    quantize_embedding: bool | None = None,
    force: bool = False,
    verify: bool = True,
    upload: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> ConvertResult:
    """Convert `src` (hub id or PyLate-layout directory) to an MLX checkpoint in `out`."""
    say = progress or (lambda msg: logger.info(msg))
    params = _precision_params(precision, group_size)
    out = Path(out).expanduser().resolve()
    if out.exists() and not force:
        raise InputError(f"{out} already exists; pass --force to replace it")
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} exists and is not a directory")

    ckpt = load_checkpoint(src)
    if ckpt.quantization:
        q = ckpt.quantization
        raise CheckpointError(
            f"{ckpt.path} is already quantized ({q.get('mode')}, {q.get('bits')}-bit); converting it again "
            "would quantize twice. Convert from the original bf16/fp32 checkpoint instead."
        )
    validate_shapes(ckpt)
    if out == ckpt.path or ckpt.path in out.parents:
        raise InputError(f"OUT ({out}) must not be the source directory or inside it")

    if params is not None:
        if quantize_embedding is None:
            quantize_embedding = DEFAULT_QUANTIZE_EMBEDDING[precision]
        modules = quantizable_modules(ckpt.args, embedding=quantize_embedding)
        _check_group_size(ckpt, modules, params["group_size"])
    else:
        modules = []

    say(f"reading {ckpt.model_id}")
    weights = _load_bf16(ckpt)
    if modules:
        say(f"quantizing {len(modules)} modules ({precision}, group size {params['group_size']})")
        weights = quantize_mlx(weights, modules, **params)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        quant = None if params is None else {**params, "quantized": modules}
        _write(tmp, ckpt, weights, quant, precision)
        fidelity = None
        if verify:
            say("measuring fidelity against the PyTorch fp32 reference")
            from lfm_colbert.verify import verify as run_verify

            fidelity = run_verify(tmp, ckpt.path).to_dict()
            fidelity["candidate"] = out.name
        _write_card(tmp, out.name, ckpt, precision, quant, fidelity)
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    weights_bytes = (out / "model.safetensors").stat().st_size
    total = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    say(f"wrote {out} ({weights_bytes / 1e6:.1f} MB of weights)")
    if upload:
        upload_checkpoint(out, upload)
        say(f"uploaded to https://huggingface.co/{upload}")
    return ConvertResult(out, precision, weights_bytes, total, quant, fidelity)


def _precision_params(precision: str, group_size: int | None) -> dict[str, Any] | None:
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    params = PRECISIONS[precision]
    if params is None:
        if group_size is not None:
            raise InputError("--group-size applies to 8bit, 4bit and mxfp4 only, not bf16")
        return None
    params = dict(params)
    if group_size is not None:
        params["group_size"] = int(group_size)
    check_params(params["mode"], params["bits"], params["group_size"])
    return params


def _check_group_size(ckpt: Checkpoint, modules: list[str], group_size: int) -> None:
    """Every quantized weight's input dimension must be a multiple of the group size."""
    shapes = ckpt.tensor_shapes()
    bad = sorted({(shapes[m + ".weight"][0][-1]) for m in modules if shapes[m + ".weight"][0][-1] % group_size})
    if bad:
        raise InputError(
            f"group size {group_size} does not divide the input dimension(s) {bad} of this model; "
            f"pick a group size that divides {ckpt.args.hidden_size} and {ckpt.args.ff_dim}"
        )


def _load_bf16(ckpt: Checkpoint) -> dict[str, Any]:
    """Every tensor with its canonical name and MLX layout, cast to bf16 (bf16 sources stay bit-exact)."""
    import mlx.core as mx

    from lfm_colbert.models.mlx.backend import load_weights
    from lfm_colbert.models.mlx.lfm2 import Model

    weights = Model.sanitize(load_weights(ckpt))
    return {k: v.astype(mx.bfloat16) for k, v in weights.items()}


def _write(tmp: Path, ckpt: Checkpoint, weights: dict[str, Any], quant: dict[str, Any] | None, precision: str) -> None:
    import mlx.core as mx

    mx.save_safetensors(str(tmp / "model.safetensors"), weights, metadata={"format": "mlx"})
    config = dict(ckpt.config)
    config.pop("auto_map", None)  # the remote modeling file is not shipped; this package is the code
    config.pop("torch_dtype", None)
    # Sizes the loader would otherwise infer from unpacked shapes (impossible once packed).
    a = ckpt.args
    config.update(vocab_size=a.vocab_size, dtype="bfloat16")
    if not a.block_auto_adjust_ff_dim:
        config.update(intermediate_size=a.intermediate_size, block_ff_dim=a.intermediate_size,
                      block_auto_adjust_ff_dim=False)
    if quant:
        config["quantization"] = quant
    config["lfm_colbert"] = {"converted_from": ckpt.model_id, "precision": precision, "layout": "mlx"}
    (tmp / "config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    for name in SIDE_FILES:
        if (ckpt.path / name).is_file():
            shutil.copy2(ckpt.path / name, tmp / name)
    for name in LICENSE_FILES:
        if (ckpt.path / name).is_file():
            shutil.copy2(ckpt.path / name, tmp / name)


def _replace_dir(tmp: Path, out: Path) -> None:
    """Move `tmp` to `out`; an existing `out` (--force) is removed only once the new one is in place."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    try:
        os.replace(tmp, out)
    except OSError:
        if old is not None:
            os.replace(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def upload_checkpoint(path: Path, repo_id: str, private: bool = False) -> None:
    """Push a converted directory to the Hugging Face hub (needs a token: `huggingface-cli login`)."""
    from huggingface_hub import HfApi

    api = HfApi()
    try:
        api.create_repo(repo_id, exist_ok=True, private=private)
        api.upload_folder(folder_path=str(path), repo_id=repo_id,
                          commit_message=f"Upload {path.name} (lfm-colbert convert)")
    except Exception as exc:
        raise CheckpointError(f"upload to {repo_id} failed: {type(exc).__name__}: {exc}") from None


# -- the model card -----------------------------------------------------------------------------------

_PRECISION_TEXT = {
    "bf16": "bfloat16 weights, no quantization (bit-exact copy of a bf16 source)",
    "8bit": "8-bit affine quantization",
    "4bit": "4-bit affine quantization",
    "mxfp4": "MXFP4 (e2m1 values, e8m0 scale per group of 32)",
}


def _write_card(tmp: Path, name: str, ckpt: Checkpoint, precision: str, quant: dict[str, Any] | None,
                fidelity: dict[str, Any] | None) -> None:
    size = (tmp / "model.safetensors").stat().st_size
    source = ckpt.model_id
    lines = [
        "---",
        "library_name: mlx",
        "pipeline_tag: sentence-similarity",
        "tags: [ColBERT, PyLate, late-interaction, mlx, lfm2, lfm-colbert]",
        "license: other",
        "license_name: lfm1.0",
        f"base_model: {source}",
        "---",
        "",
        f"# {name}",
        "",
        f"An MLX conversion of `{source}` ({'LFM2.5, bidirectional' if not ckpt.args.is_causal else 'LFM2, causal'}),",
        f"made with `lfm-colbert convert --precision {precision}` on {date.today().isoformat()}.",
        "It is self-contained: the `lfm-colbert` package runs it on MLX (Apple Silicon) or on PyTorch",
        "(any platform; 8-bit and 4-bit stay packed in memory), with no mlx-lm or mlx-embeddings needed.",
        "",
        "## Precision and size",
        "",
        f"- Precision: {_PRECISION_TEXT[precision]}.",
        f"- Weights: `model.safetensors`, {size:,} bytes ({size / 1e6:.1f} MB).",
    ]
    if quant:
        emb = "model.embed_tokens" in quant["quantized"]
        lines += [
            f"- Quantized: the {len(quant['quantized']) - emb} Linear layers of the backbone"
            f"{' and the token embedding' if emb else ''}, mode `{quant['mode']}`, {quant['bits']} bits, "
            f"group size {quant['group_size']}.",
            "- Kept in bf16: RMSNorm weights, the depthwise short-conv kernels, the 1024->128 ColBERT Dense head"
            + ("" if emb else ", and the token embedding (quantizing it cost the most fidelity per byte saved)")
            + ".",
        ]
    lines += [
        "",
        "## Usage",
        "",
        "```python",
        "from lfm_colbert import ColBERT",
        f'model = ColBERT("{name}")          # backend="auto": MLX on Apple Silicon, else PyTorch',
        'q = model.encode(["what is late interaction?"], is_query=True)',
        'd = model.encode(["ColBERT scores documents token by token."])',
        "```",
        "",
        "## Measured fidelity",
        "",
    ]
    if fidelity:
        lines += [
            "Per-token cosine against the PyTorch fp32 reference on the same token ids "
            f"(`lfm-colbert verify`; candidate on {fidelity['backend']}, compute dtype {fidelity['dtype']}):",
            "",
            "| probe set | texts | tokens | worst cosine | mean cosine |",
            "|---|---|---|---|---|",
        ]
        lines += [f"| {s['name']} | {s['texts']} | {s['tokens']} | {s['worst']:.6f} | {s['mean']:.6f} |"
                  for s in fidelity["sets"]]
        lines += [f"| **all** | | {fidelity['tokens']} | **{fidelity['worst']:.6f}** | **{fidelity['mean']:.6f}** |", ""]
    else:
        lines += ["Not measured at conversion time (`--no-verify`). Run:", ""]
    lines += [
        "Re-check it yourself:",
        "",
        "```bash",
        f"lfm-colbert verify {name} --reference {source}",
        "```",
        "",
        "## License",
        "",
        f"This is a modified version of `{source}` by Liquid AI, distributed under the LFM Open License v1.0",
        "(see `LICENSE`, copied from the original when it was present). Modifications: the weights were",
        f"converted to {_PRECISION_TEXT[precision]}, renamed to a single-file MLX layout, and the",
        "short-conv kernels were transposed to MLX's (channels, kernel, 1) layout, by the lfm-colbert converter.",
        "",
    ]
    (tmp / "README.md").write_text("\n".join(lines), encoding="utf-8")
