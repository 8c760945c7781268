"""Tokenization exactly as PyLate does it for LFM2 ColBERT models.

Queries:   [BOS, [Q], tokens..., pad(7)...]   always `query_length` long; pads are attention-masked
           but their output vectors are kept (query expansion).
Documents: [BOS, [D], tokens...]               at most `document_length`, padded to the batch's longest;
           pads and skiplisted punctuation are dropped from the outputs.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from tokenizers import AddedToken, Tokenizer

from lfm_colbert.config import ColBERTSettings
from lfm_colbert.errors import CheckpointError, InputError

logger = logging.getLogger(__name__)

# No LFM2 token is longer than this many characters, so cutting a huge text here before
# tokenizing cannot change the first `max_length` tokens but bounds the tokenizer's work.
_CHARS_PER_TOKEN_BOUND = 64


class ColBERTTokenizer:
    """Wraps a `tokenizers.Tokenizer` with PyLate's query/document conventions."""

    def __init__(
        self,
        tokenizer_file: str | Path,
        settings: ColBERTSettings,
        tokenizer_config: dict[str, Any] | None = None,
        model_config: dict[str, Any] | None = None,
    ) -> None:
        try:
            self.tokenizer = Tokenizer.from_file(str(tokenizer_file))
        except Exception as exc:
            raise CheckpointError(f"cannot read tokenizer {tokenizer_file}: {exc}") from None
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        self.settings = settings
        # PyLate adds the prefixes as tokens; a saved PyLate tokenizer already has them.
        for prefix in (settings.query_prefix, settings.document_prefix):
            if self.tokenizer.token_to_id(prefix) is None:
                self.tokenizer.add_tokens([AddedToken(prefix)])
        self.query_prefix_id = self.tokenizer.token_to_id(settings.query_prefix)
        self.document_prefix_id = self.tokenizer.token_to_id(settings.document_prefix)
        self.pad_token_id = _pad_token_id(self.tokenizer, tokenizer_config or {}, model_config or {})
        # Only bare single-character tokens are skipped; "Ġ," style tokens are kept (as in PyLate).
        self.skiplist_ids = np.array(
            sorted({i for w in settings.skiplist_words if (i := self.tokenizer.token_to_id(w)) is not None}),
            dtype=np.int64,
        )

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    def max_tokens(self, is_query: bool) -> int:
        return self.settings.query_length if is_query else self.settings.document_length

    def count_tokens(self, text: str) -> int:
        """Tokens the model would see for `text` (BOS and prefix included), before truncation."""
        return len(self.tokenizer.encode(text).ids) + 1

    def tokenize(self, texts: Sequence[str], is_query: bool = False) -> dict[str, np.ndarray]:
        """PyLate-compatible `input_ids` / `attention_mask`, int64 arrays of shape (B, S)."""
        ids, mask, _ = self.tokenize_with_info(check_texts(texts), is_query=is_query)
        return {"input_ids": ids, "attention_mask": mask}

    def tokenize_with_info(
        self, texts: Sequence[str], is_query: bool = False
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """As `tokenize`, plus the number of texts that were truncated; `texts` already passed `check_texts`."""
        s = self.settings
        max_len = self.max_tokens(is_query) - 1  # room for the prefix token
        cut = [t[: max_len * _CHARS_PER_TOKEN_BOUND] for t in texts]
        encodings = self.tokenizer.encode_batch(cut)
        seqs = [e.ids for e in encodings]
        truncated = sum(len(ids) > max_len for ids in seqs)
        seqs = [ids[:max_len] for ids in seqs]  # BOS + text tokens, cut from the right
        prefix = self.query_prefix_id if is_query else self.document_prefix_id
        expand = is_query and s.do_query_expansion
        width = max_len if expand else max(len(x) for x in seqs)
        input_ids = np.full((len(seqs), width + 1), self.pad_token_id, dtype=np.int64)  # (B, S)
        attention_mask = np.zeros_like(input_ids)
        for row, ids in enumerate(seqs):
            n = len(ids)
            # Insert the prefix token after BOS, as PyLate's insert_prefix_token does.
            input_ids[row, 0] = ids[0]
            input_ids[row, 1] = prefix
            input_ids[row, 2 : n + 1] = ids[1:]
            attention_mask[row, : n + 1] = 1
        if expand and s.attend_to_expansion_tokens:
            attention_mask[:] = 1
        return input_ids, attention_mask, truncated

    def output_mask(self, input_ids: np.ndarray, attention_mask: np.ndarray, is_query: bool) -> np.ndarray:
        """Which positions become output vectors (bool, (B, S))."""
        if is_query:
            if self.settings.do_query_expansion:
                return np.ones_like(input_ids, dtype=bool)
            return attention_mask.astype(bool)
        return attention_mask.astype(bool) & ~np.isin(input_ids, self.skiplist_ids)

    def output_spans(self, texts: Sequence[str], is_query: bool = False) -> list[np.ndarray]:
        """Where each output vector's token sits in its text: one int64 array (n_vectors, 2) of
        [start, end) character offsets per text, row for row with the vectors `encode` returns
        (same truncation, skiplist and query expansion). BOS, the [Q]/[D] prefix and expansion
        pads have no text: their rows are (-1, -1). Offsets count Python characters (code points)
        and include a token's leading space, as the tokenizer reports them."""
        texts = check_texts(texts)
        ids, mask, _ = self.tokenize_with_info(texts, is_query=is_query)
        keep = self.output_mask(ids, mask, is_query)
        max_len = self.max_tokens(is_query) - 1
        encodings = self.tokenizer.encode_batch([t[: max_len * _CHARS_PER_TOKEN_BOUND] for t in texts])
        out = []
        for row, enc in enumerate(encodings):
            n = min(len(enc.ids), max_len)  # BOS + text tokens kept by tokenize_with_info
            spans = np.full((ids.shape[1], 2), -1, dtype=np.int64)  # (S, 2); position 1 is the prefix
            spans[2 : n + 1] = np.asarray(enc.offsets[1:n], dtype=np.int64).reshape(-1, 2)
            out.append(spans[keep[row]])
        return out


def check_texts(texts: Sequence[str] | str) -> list[str]:
    """Validate user texts; one error that names every bad position."""
    if isinstance(texts, str):
        texts = [texts]
    if texts is None:
        raise InputError("texts is None; pass a string or a list of strings")
    try:
        texts = list(texts)
    except TypeError:
        raise InputError(f"texts must be a string or a list of strings, got {type(texts).__name__}") from None
    if not texts:
        raise InputError("texts is empty; pass at least one string")
    not_str = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if not_str:
        i = not_str[0]
        raise InputError(
            f"texts[{i}] is {type(texts[i]).__name__}, not str"
            + (f" (and {len(not_str) - 1} more non-strings)" if len(not_str) > 1 else "")
        )
    blank = [i for i, t in enumerate(texts) if not t.strip()]
    if blank:
        raise InputError(
            f"texts{blank[:10]} {'is' if len(blank) == 1 else 'are'} empty or whitespace-only; "
            "an empty text has nothing to encode"
        )
    for i, t in enumerate(texts):
        try:
            t.encode("utf-8")
        except UnicodeEncodeError as exc:
            # A lone surrogate: what bytes that are not UTF-8 become in a file name or command-line
            # argument, or a JSON "\ud800". The tokenizer cannot take it (it raised TypeError).
            raise InputError(
                f"texts[{i}] holds a lone surrogate ({t[exc.start]!r} at {exc.start}): text that is not valid "
                "Unicode, as bytes that are not UTF-8 become") from None
    return texts


def _pad_token_id(tokenizer: Tokenizer, tok_cfg: dict[str, Any], model_cfg: dict[str, Any]) -> int:
    """PyLate pads with the mask token if there is one, else with EOS (id 7 for LFM2)."""

    def token_id(entry: Any) -> int | None:
        if isinstance(entry, dict):
            entry = entry.get("content")
        return tokenizer.token_to_id(entry) if isinstance(entry, str) else None

    for key in ("mask_token", "eos_token"):
        if (tid := token_id(tok_cfg.get(key))) is not None:
            return tid
    eos = model_cfg.get("eos_token_id")
    if isinstance(eos, list):
        eos = eos[0] if eos else None
    if isinstance(eos, int):
        return eos
    raise CheckpointError("cannot find the EOS token (PyLate's pad token): add eos_token to tokenizer_config.json")
