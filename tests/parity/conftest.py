"""Fixtures for parity tests: one full-size (350M, random weights) checkpoint per session."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def full_checkpoint(tmp_path_factory, real_tokenizer_file) -> Path:
    """The real LFM2.5-ColBERT-350M layout and shapes in bf16 (about 707 MB), random weights."""
    from lfm_colbert.synthetic import write_checkpoint

    return write_checkpoint(
        tmp_path_factory.mktemp("full-lfm2.5"), size="full", dtype="bfloat16", tokenizer_file=real_tokenizer_file
    )
