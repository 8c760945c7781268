"""Measure how closely a converted checkpoint reproduces the original: per-token cosine against
the PyTorch fp32 reference, on the same token ids.

Three probe sets: short prompts (documents of a few tokens), queries with expansion (32 tokens,
pads kept) and a passage of about 130 tokens. Every kept output token is compared.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from lfm_colbert.checkpoint import Checkpoint, load_checkpoint
from lfm_colbert.errors import CheckpointError, InputError
from lfm_colbert.tokenization import ColBERTTokenizer

SHORT_PROMPTS = [
    "hello",
    "Late interaction retrieval.",
    "¿Dónde está la biblioteca?",
    "Wie spät ist es?",
    "東京の天気",
    "Le chat dort.",
]
QUERIES = [
    "what is late interaction retrieval?",
    "how do vaccines train the immune system",
    "quelle est la capitale de l'Australie ?",
    "Welche Sprachen werden in der Schweiz gesprochen?",
    "量子コンピュータとは何ですか",
    "best way to quantize an embedding model without losing accuracy",
]
PASSAGE = (
    "ColBERT is a retrieval model that keeps one vector for every token of a document instead of "
    "compressing the whole text into a single embedding. At search time each query token looks for "
    "its most similar document token, and the document's score is the sum of those maxima, a rule "
    "called MaxSim. Because the comparison happens token by token, the model can match rare names, "
    "numbers and exact phrases that a single vector tends to blur, while still capturing paraphrases "
    "through the contextual encoder. The price is storage: a passage of a hundred tokens needs a "
    "hundred small vectors, which is why practical systems compress them with centroids and residuals."
)

# Default worst-case cosine a candidate must reach, by precision: meant for TRAINED weights and
# not yet calibrated on the real checkpoint (random-weight 350M models, bench/quantize.py, reach
# only ~0.99 at 8-bit and ~0.5-0.6 at 4-bit, so pass --min-cosine for those).
DEFAULT_MIN_COSINE = {"float32": 0.9999, "float16": 0.999, "bf16": 0.99, "8bit": 0.98, "4bit": 0.90, "mxfp4": 0.85}


@dataclass
class SetResult:
    name: str
    texts: int
    tokens: int
    worst: float
    mean: float


@dataclass
class VerifyReport:
    candidate: str
    reference: str
    precision: str
    backend: str
    dtype: str
    min_cosine: float
    sets: list[SetResult] = field(default_factory=list)

    @property
    def worst(self) -> float:
        return min(s.worst for s in self.sets)

    @property
    def mean(self) -> float:
        return sum(s.mean * s.tokens for s in self.sets) / sum(s.tokens for s in self.sets)

    @property
    def passed(self) -> bool:
        return self.worst >= self.min_cosine

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(worst=self.worst, mean=self.mean, tokens=sum(s.tokens for s in self.sets), passed=self.passed)
        return d

    def table(self) -> str:
        rows = [f"{'set':<16}{'texts':>6}{'tokens':>8}{'worst cos':>12}{'mean cos':>12}"]
        for s in self.sets:
            rows.append(f"{s.name:<16}{s.texts:>6}{s.tokens:>8}{s.worst:>12.6f}{s.mean:>12.6f}")
        total = sum(s.tokens for s in self.sets)
        rows.append(f"{'all':<16}{'':>6}{total:>8}{self.worst:>12.6f}{self.mean:>12.6f}")
        verdict = "PASS" if self.passed else "FAIL"
        rows.append(f"{verdict}: worst {self.worst:.6f} {'>=' if self.passed else '<'} threshold {self.min_cosine}")
        return "\n".join(rows)


def precision_of(ckpt: Checkpoint) -> str:
    """"bf16", "8bit", "4bit", "mxfp4" or the stored float dtype of an unconverted checkpoint."""
    q = ckpt.quantization
    if q:
        return "mxfp4" if q.get("mode") == "mxfp4" else f"{q.get('bits')}bit"
    dtypes = {dt for _, dt in ckpt.tensor_shapes().values()}
    if dtypes == {"BF16"}:
        return "bf16"
    return "float32" if "F32" in dtypes else "float16"


def _forward_sets(backend, tok: ColBERTTokenizer, probes) -> list[np.ndarray]:
    outs = []
    for texts, is_query in probes:
        batch = tok.tokenize(texts, is_query=is_query)
        ids, mask = batch["input_ids"], batch["attention_mask"]
        vectors = backend.forward(ids, mask)  # (B, S, 128)
        outs.append(vectors[tok.output_mask(ids, mask, is_query)])  # (kept tokens, 128)
    return outs


def make_backend(ckpt: Checkpoint, backend: str, dtype: str | None, device: str | None):
    """The candidate's backend; PyTorch runs on the CPU unless a device is given, like the reference."""
    from lfm_colbert.models import load_backend, resolve_backend

    if device is None and resolve_backend(backend) == "torch":
        device = "cpu"
    return load_backend(ckpt, backend=backend, dtype=dtype, device=device)


def verify(
    candidate: str | os.PathLike,
    reference: str | os.PathLike | None = None,
    *,
    backend: str = "auto",
    dtype: str = "float32",
    device: str | None = None,
    min_cosine: float | None = None,
) -> VerifyReport:
    """Encode the probes with `candidate` and with `reference` (PyTorch, fp32) and compare them."""
    cand = load_checkpoint(candidate)
    ref = load_checkpoint(reference)
    if (cand.args.hidden_size, cand.args.layer_types, cand.args.is_causal, cand.args.vocab_size) != (
        ref.args.hidden_size, ref.args.layer_types, ref.args.is_causal, ref.args.vocab_size
    ):
        raise CheckpointError(
            f"{cand.path} and {ref.path} are different models (variant, layers, hidden size or vocabulary differ)"
        )
    precision = precision_of(cand)
    if min_cosine is None:
        min_cosine = DEFAULT_MIN_COSINE.get(precision, DEFAULT_MIN_COSINE["bf16"])
    if not 0.0 < min_cosine <= 1.0:
        raise InputError(f"the cosine threshold must be in (0, 1], got {min_cosine}")

    tok = ColBERTTokenizer(ref.tokenizer_file, ref.settings, ref.tokenizer_config, ref.config)
    cand_tok = ColBERTTokenizer(cand.tokenizer_file, cand.settings, cand.tokenizer_config, cand.config)
    probes = [(SHORT_PROMPTS, False), (QUERIES, True), ([PASSAGE], False)]
    for texts, is_query in probes:
        a, b = tok.tokenize(texts, is_query), cand_tok.tokenize(texts, is_query)
        if not all(np.array_equal(a[k], b[k]) for k in a):
            raise CheckpointError(f"{cand.path} tokenizes differently from {ref.path}: its tokenizer was changed")

    # The same token ids go through both models; the reference is always PyTorch fp32.
    from lfm_colbert.models.torch.backend import TorchBackend

    ref_out = _forward_sets(TorchBackend(ref, dtype="float32", device="cpu"), tok, probes)
    cand_backend = make_backend(cand, backend, dtype, device)
    cand_out = _forward_sets(cand_backend, tok, probes)

    report = VerifyReport(
        candidate=str(cand.model_id), reference=str(ref.model_id), precision=precision,
        backend=cand_backend.name, dtype=cand_backend.dtype_name, min_cosine=float(min_cosine),
    )
    for name, (texts, _), r, c in zip(("short prompts", "queries", "passage"), probes, ref_out, cand_out):
        cos = (r * c).sum(-1) / (np.linalg.norm(r, axis=-1) * np.linalg.norm(c, axis=-1))  # (tokens,)
        report.sets.append(SetResult(name, len(texts), int(cos.size), float(cos.min()), float(cos.mean())))
    return report
