"""Find, read and validate a checkpoint in the sentence-transformers / PyLate layout.

    config.json                       LFM2 backbone config
    model.safetensors                 backbone weights, unprefixed (`layers.0.conv.in_proj.weight`, ...)
    1_Dense/model.safetensors         ColBERT head (`linear.weight`, 128 x 1024)
    modules.json, config_sentence_transformers.json, tokenizer.json, tokenizer_config.json

A directory written by `lfm-colbert convert` (MLX layout: one file, canonical names, maybe
quantized) is read through the same functions.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lfm_colbert.config import ColBERTSettings, ModelArgs
from lfm_colbert.errors import CheckpointError

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "LiquidAI/LFM2.5-ColBERT-350M"
MODEL_ENV_VAR = "LFM_COLBERT_MODEL"
# Files a hub snapshot needs; everything else in the repo (ONNX exports, ...) is skipped.
HUB_PATTERNS = ["*.json", "*.safetensors", "*/*.json", "*/*.safetensors", "*.jinja", "LICENSE*", "README.md"]
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


@dataclass
class Checkpoint:
    """What a backend needs to build a model: paths, parsed configs and the weight files."""

    path: Path
    model_id: str
    config: dict[str, Any]
    args: ModelArgs
    settings: ColBERTSettings
    weight_files: list[tuple[str, Path]]  # (name prefix, file); prefix "1_Dense." for the head
    tokenizer_file: Path
    tokenizer_config: dict[str, Any] = field(default_factory=dict)
    _shapes: dict[str, tuple[tuple[int, ...], str]] | None = field(default=None, repr=False, compare=False)

    @property
    def quantization(self) -> dict[str, Any] | None:
        """The MLX quantization block of a converted checkpoint, or None."""
        return self.config.get("quantization")

    def tensor_shapes(self) -> dict[str, tuple[tuple[int, ...], str]]:
        """Canonical tensor name -> (shape, safetensors dtype), read from file headers once."""
        if self._shapes is None:
            self._shapes = {}
            for prefix, file in self.weight_files:
                for name, (shape, dtype) in read_safetensors_header(file).items():
                    self._shapes[canonical_name(prefix + name)] = (shape, dtype)
        return dict(self._shapes)

    def fingerprint(self) -> str:
        """A short hash that changes when the weights change; cheap (headers + a sample of bytes)."""
        h = hashlib.sha256()
        h.update(json.dumps(self.config, sort_keys=True).encode())
        for prefix, file in self.weight_files:
            h.update(prefix.encode())
            with open(file, "rb") as f:
                h.update(f.read(1 << 20))
                size = file.stat().st_size
                if size > 1 << 21:
                    f.seek(size - (1 << 20))
                    h.update(f.read())
        return h.hexdigest()[:16]


def resolve_model_path(model: str | os.PathLike | None) -> tuple[Path, str]:
    """Turn a hub id, a local directory or None into (local directory, model id)."""
    if model is None:
        model = os.environ.get(MODEL_ENV_VAR) or DEFAULT_MODEL
    text = os.fspath(model)
    path = Path(text).expanduser()
    if path.is_dir():
        return path.resolve(), str(path.resolve())
    if path.exists():
        raise CheckpointError(f"{text} is a file; give the checkpoint directory that contains config.json")
    if not _HUB_ID.match(text) or text.startswith((".", "/", "~")):
        raise CheckpointError(
            f"no such model directory: {text}. Give a local checkpoint directory or a hub id "
            f"such as {DEFAULT_MODEL}."
        )
    return _download(text), text


def _download(repo_id: str) -> Path:
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise CheckpointError("huggingface_hub is needed to download models: pip install huggingface_hub") from exc
    # Cache first: an offline laptop with the model cached must not wait on network retries.
    try:
        return Path(snapshot_download(repo_id, allow_patterns=HUB_PATTERNS, local_files_only=True))
    except Exception:
        pass
    try:
        return Path(snapshot_download(repo_id, allow_patterns=HUB_PATTERNS))
    except Exception as exc:
        raise CheckpointError(
            f"could not load {repo_id!r} from the Hugging Face hub ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else 'no details'}).\n"
            f"If you are offline, point at a local copy of the checkpoint: pass its directory as the "
            f"model (ColBERT('/path/to/LFM2.5-ColBERT-350M') or --model /path) or set "
            f"{MODEL_ENV_VAR}=/path. The directory needs config.json, model.safetensors, "
            f"1_Dense/model.safetensors and tokenizer.json."
        ) from None


def load_checkpoint(model: str | os.PathLike | None = None) -> Checkpoint:
    """Resolve `model`, read its configs and list its weight files; loads no tensors."""
    path, model_id = resolve_model_path(model)
    config = _read_json(path / "config.json", required=True)
    args = ModelArgs.from_config(config)
    st_config = _read_json(path / "config_sentence_transformers.json")
    settings = ColBERTSettings.from_config(st_config)

    weight_files = _backbone_files(path)
    # A converted checkpoint keeps the head in its one file; PyLate's layout has it in 1_Dense/.
    has_head = any("dense.weight" in read_safetensors_header(f) for _, f in weight_files)
    dense_files = [] if has_head else [("1_Dense.", _dense_file(path))]
    tokenizer_file = path / "tokenizer.json"
    if not tokenizer_file.is_file():
        raise CheckpointError(f"{path} has no tokenizer.json")
    ckpt = Checkpoint(
        path=path,
        model_id=model_id,
        config=config,
        args=args,
        settings=settings,
        weight_files=weight_files + dense_files,
        tokenizer_file=tokenizer_file,
        tokenizer_config=_read_json(path / "tokenizer_config.json"),
    )
    _infer_sizes(ckpt)
    return ckpt


def _read_json(file: Path, required: bool = False) -> dict[str, Any]:
    if not file.is_file():
        if required:
            raise CheckpointError(f"{file.parent} is not a checkpoint directory: {file.name} is missing")
        return {}
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{file} is not valid JSON: {exc}") from None


def _backbone_files(path: Path) -> list[tuple[str, Path]]:
    single = path / "model.safetensors"
    if single.is_file():
        return [("", single)]
    index = path / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(_read_json(index).get("weight_map", {}).values()))
        missing = [s for s in shards if not (path / s).is_file()]
        if missing:
            raise CheckpointError(f"{path}: shard files listed in {index.name} are missing: {missing}")
        return [("", path / s) for s in shards]
    if (path / "pytorch_model.bin").is_file():
        raise CheckpointError(
            f"{path} holds pytorch_model.bin only; lfm-colbert reads safetensors (no pickle). "
            "Re-save the checkpoint with safetensors."
        )
    raise CheckpointError(f"{path} has no model.safetensors")


def _dense_file(path: Path) -> Path:
    # modules.json names the Dense module's folder (PyLate writes "1_Dense").
    folder = "1_Dense"
    for module in _read_json_list(path / "modules.json"):
        if str(module.get("type", "")).endswith("Dense"):
            folder = module.get("path", folder)
    file = path / folder / "model.safetensors"
    if not file.is_file():
        raise CheckpointError(
            f"{path} has no ColBERT head: {folder}/model.safetensors is missing "
            "(the 1024->128 Dense layer that PyLate saves beside the backbone)"
        )
    return file


def _read_json_list(file: Path) -> list[dict[str, Any]]:
    if not file.is_file():
        return []
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{file} is not valid JSON: {exc}") from None
    return data if isinstance(data, list) else []


def read_safetensors_header(file: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    """Tensor name -> (shape, dtype) from a safetensors header, without reading the data."""
    try:
        with open(file, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if n > 100_000_000:
                raise ValueError("header too large")
            header = json.loads(f.read(n))
    except (OSError, struct.error, ValueError) as exc:
        raise CheckpointError(f"{file} is not a readable safetensors file ({exc})") from None
    header.pop("__metadata__", None)
    return {k: (tuple(v["shape"]), v["dtype"]) for k, v in header.items()}


def canonical_name(name: str) -> str:
    """Map a checkpoint tensor name to the name both backends use (`model.*`, `dense.weight`)."""
    if name in ("1_Dense.linear.weight", "dense.0.weight", "dense_2.weight", "dense.weight"):
        return "dense.weight"
    if name.startswith("1_Dense."):
        return "dense." + name[len("1_Dense.linear."):]
    if name.startswith("model."):
        return name
    return "model." + name


def expected_shapes(args: ModelArgs) -> dict[str, tuple[int, ...]]:
    """Every tensor the model needs, with its PyTorch-layout shape."""
    H, F, K = args.hidden_size, args.ff_dim, args.conv_L_cache
    kv = args.num_key_value_heads * args.head_dim
    shapes: dict[str, tuple[int, ...]] = {
        "model.embed_tokens.weight": (args.vocab_size, H),
        "model.embedding_norm.weight": (H,),
        "dense.weight": (args.out_features, H),
    }
    for i, kind in enumerate(args.layer_types):
        p = f"model.layers.{i}."
        shapes |= {
            p + "operator_norm.weight": (H,),
            p + "ffn_norm.weight": (H,),
            p + "feed_forward.w1.weight": (F, H),
            p + "feed_forward.w3.weight": (F, H),
            p + "feed_forward.w2.weight": (H, F),
        }
        if kind == "conv":
            shapes |= {
                p + "conv.in_proj.weight": (3 * H, H),
                p + "conv.out_proj.weight": (H, H),
                p + "conv.conv.weight": (H, 1, K),
            }
        else:
            shapes |= {
                p + "self_attn.q_proj.weight": (H, H),
                p + "self_attn.k_proj.weight": (kv, H),
                p + "self_attn.v_proj.weight": (kv, H),
                p + "self_attn.out_proj.weight": (H, H),
                p + "self_attn.q_layernorm.weight": (args.head_dim,),
                p + "self_attn.k_layernorm.weight": (args.head_dim,),
            }
    return shapes


def _infer_sizes(ckpt: Checkpoint) -> None:
    """Take vocab size, FFN width and head size from the weights, where configs disagree with them."""
    shapes = ckpt.tensor_shapes()
    if ckpt.quantization:
        return  # packed shapes; the converter validated them and wrote the true sizes into config.json
    emb = shapes.get("model.embed_tokens.weight")
    if emb is not None and emb[0][0] != ckpt.args.vocab_size:
        logger.info("vocab size %d from the weights (config says %d)", emb[0][0], ckpt.args.vocab_size)
        ckpt.args.vocab_size = emb[0][0]
    w1 = shapes.get("model.layers.0.feed_forward.w1.weight")
    if w1 is not None and w1[0][0] != ckpt.args.ff_dim:
        # Configs store the pre-adjustment width; trust the tensor.
        ckpt.args.intermediate_size, ckpt.args.block_auto_adjust_ff_dim = w1[0][0], False
    dense = shapes.get("dense.weight")
    if dense is not None:
        ckpt.args.out_features = dense[0][0]


def validate_shapes(ckpt: Checkpoint) -> None:
    """Raise one CheckpointError naming every missing, unexpected or wrong-shaped tensor."""
    if ckpt.quantization:
        return
    found = {k: v[0] for k, v in ckpt.tensor_shapes().items()}
    want = expected_shapes(ckpt.args)
    problems = []
    missing = sorted(set(want) - set(found))
    if missing:
        problems.append(f"missing tensors: {_short(missing)}")
    wrong = [
        f"{k} is {list(found[k])}, expected {list(want[k])}"
        for k in sorted(set(want) & set(found))
        if tuple(found[k]) != tuple(want[k])
        and not (k.endswith("conv.conv.weight") and tuple(found[k]) == (want[k][0], want[k][2], 1))
    ]
    if wrong:
        problems.append("wrong shapes: " + "; ".join(wrong[:5]) + (" ..." if len(wrong) > 5 else ""))
    unexpected = sorted(k for k in set(found) - set(want) if "rotary" not in k)
    if unexpected:
        problems.append(f"unexpected tensors: {_short(unexpected)}")
    if problems:
        raise CheckpointError(f"{ckpt.path} does not match its config.json: " + " | ".join(problems))


def _short(names: list[str], n: int = 6) -> str:
    return ", ".join(names[:n]) + (f" (+{len(names) - n} more)" if len(names) > n else "")
