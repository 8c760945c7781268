"""`ColBERT`: load a checkpoint on a backend and encode texts into per-token vectors, as PyLate does."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from typing import Any, Iterator, Sequence

import numpy as np
from tqdm.auto import tqdm

from lfm_colbert.checkpoint import load_checkpoint
from lfm_colbert.errors import InputError
from lfm_colbert.models import load_backend
from lfm_colbert.tokenization import ColBERTTokenizer, check_texts

logger = logging.getLogger(__name__)

# Show a progress bar by default only for jobs that take more than a moment.
_PROGRESS_MIN_TEXTS = 256


class ColBERT:
    """An LFM2 / LFM2.5 ColBERT model.

    Args:
        model: hub id, local checkpoint directory, or None for `$LFM_COLBERT_MODEL`
            or LiquidAI/LFM2.5-ColBERT-350M.
        backend: "auto" (MLX on Apple Silicon, else PyTorch), "torch" or "mlx".
        dtype: "float32", "bfloat16" or "float16"; None picks bf16 where the hardware runs it natively.
        device: PyTorch device ("cpu", "cuda", "cuda:1", "mps"); None picks CUDA when present.
        dequantize: for an 8-bit / 4-bit / mxfp4 checkpoint (`lfm-colbert convert`), True runs it on
            float weights dequantized at load; None (default) runs it natively where the backend
            can, keeping it packed in memory (`describe()["execution"]` says how).
        query_length, document_length, do_query_expansion, attend_to_expansion_tokens:
            override the checkpoint's `config_sentence_transformers.json`.
    """

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        *,
        backend: str = "auto",
        dtype: str | None = None,
        device: str | None = None,
        query_length: int | None = None,
        document_length: int | None = None,
        do_query_expansion: bool | None = None,
        attend_to_expansion_tokens: bool | None = None,
        dequantize: bool | None = None,
    ) -> None:
        self.checkpoint = ckpt = load_checkpoint(model)
        ckpt.settings = ckpt.settings.replace(
            query_length=query_length,
            document_length=document_length,
            do_query_expansion=do_query_expansion,
            attend_to_expansion_tokens=attend_to_expansion_tokens,
        )
        self.tokenizer = ColBERTTokenizer(ckpt.tokenizer_file, ckpt.settings, ckpt.tokenizer_config, ckpt.config)
        if self.tokenizer.vocab_size > ckpt.args.vocab_size:
            raise InputError(
                f"the tokenizer has {self.tokenizer.vocab_size} tokens but the embedding only "
                f"{ckpt.args.vocab_size} rows: tokenizer and weights do not belong together"
            )
        self.backend = load_backend(ckpt, backend=backend, dtype=dtype, device=device, dequantize=dequantize)

    # -- properties -------------------------------------------------------------------------------

    @property
    def settings(self):
        return self.checkpoint.settings

    @property
    def model_id(self) -> str:
        return self.checkpoint.model_id

    @property
    def variant(self) -> str:
        """"lfm2.5" (bidirectional) or "lfm2" (causal)."""
        return self.checkpoint.args.variant

    @property
    def dim(self) -> int:
        return self.checkpoint.args.out_features

    def describe(self) -> dict[str, Any]:
        """What an index records about the model that encoded it (JSON-able)."""
        s = self.settings
        return {
            "model_id": self.model_id,
            "variant": self.variant,
            "dim": self.dim,
            "fingerprint": self.checkpoint.fingerprint(),
            "backend": self.backend.name,
            "dtype": self.backend.dtype_name,
            "quantization": self.checkpoint.quantization,
            # How the weights run on this machine: mode (float / native int4 / int8 / dequantized),
            # resident weight bytes against the file's.
            "execution": self.backend.execution(),
            "settings": {
                "query_prefix": s.query_prefix,
                "document_prefix": s.document_prefix,
                "query_length": s.query_length,
                "document_length": s.document_length,
                "do_query_expansion": s.do_query_expansion,
                "attend_to_expansion_tokens": s.attend_to_expansion_tokens,
            },
        }

    def __repr__(self) -> str:
        return (
            f"ColBERT({self.model_id!r}, variant={self.variant}, backend={self.backend.name}, "
            f"dtype={self.backend.dtype_name})"
        )

    # -- encoding ---------------------------------------------------------------------------------

    def tokenize(self, texts: Sequence[str], is_query: bool = False) -> dict[str, np.ndarray]:
        """`input_ids` and `attention_mask` (int64, (B, S)) exactly as PyLate builds them."""
        return self.tokenizer.tokenize(texts, is_query=is_query)

    def encode(
        self,
        texts: str | Sequence[str],
        *,
        is_query: bool = False,
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
    ) -> list[np.ndarray]:
        """One float32 array (tokens, 128) of L2-normalised vectors per text, in input order.

        Texts are sorted by length and batched as PyLate does, so padded batches (which LFM2.5's
        centred convolution sees) match PyLate's vectors.
        """
        texts = check_texts(texts)
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
        order = np.argsort([-len(t) for t in texts])  # the same call PyLate makes
        if show_progress_bar is None:
            show_progress_bar = len(texts) >= _PROGRESS_MIN_TEXTS and sys.stderr.isatty()
        out: list[np.ndarray | None] = [None] * len(texts)
        truncated = 0
        kind = "queries" if is_query else "documents"
        with tqdm(total=len(texts), desc=f"Encoding {kind}", unit=kind[:-1] if is_query else "doc",
                  disable=not show_progress_bar) as bar:
            for start in range(0, len(texts), batch_size):
                idx = order[start : start + batch_size]
                ids, mask, n_cut = self.tokenizer.tokenize_with_info([texts[i] for i in idx], is_query)
                truncated += n_cut
                vectors = self.backend.forward(ids, mask)  # (B, S, 128)
                keep = self.tokenizer.output_mask(ids, mask, is_query)
                for row, i in enumerate(idx):
                    out[i] = np.ascontiguousarray(vectors[row][keep[row]])
                bar.update(len(idx))
        if truncated:
            limit = self.tokenizer.max_tokens(is_query)
            warnings.warn(
                f"{truncated} of {len(texts)} {kind} were longer than {limit} tokens and were truncated"
                + ("" if is_query else "; split long documents into passages (lfm-colbert index does)"),
                stacklevel=2,
            )
        return out  # type: ignore[return-value]

    def token_spans(self, texts: str | Sequence[str], *, is_query: bool = False) -> list[np.ndarray]:
        """Where each vector of `encode(texts, is_query=...)` comes from: one int64 array (n_vectors, 2)
        of [start, end) character offsets per text, row for row with the vectors (the skiplist and
        truncation applied the same way). Rows for BOS, the [Q]/[D] prefix and query expansion pads
        are (-1, -1). For explaining matches (lfm_colbert.explain)."""
        return self.tokenizer.output_spans(check_texts(texts), is_query=is_query)


def stream_documents(model: Any, docs: Sequence[str], batch_size: int = 32, progress_bar: Any = None,
                     show_progress: bool | None = None) -> Iterator[np.ndarray]:
    """Document vectors of `docs`, encoded 256 (or `batch_size`) at a time so an add of a large
    collection streams to its writer; the bar moves per call (None: shown on a terminal only)."""
    bar = progress_bar or tqdm(total=len(docs), desc="encoding", unit="doc",
                               disable=None if show_progress is None else not show_progress)
    step = max(batch_size, 256)
    for s in range(0, len(docs), step):
        yield from model.encode(docs[s : s + step], is_query=False, batch_size=batch_size, show_progress_bar=False)
        bar.update(min(step, len(docs) - s))
    if progress_bar is None:
        bar.close()

