"""Shared fixtures: synthetic checkpoints in the real layout, and the real data in ../shared."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# ../shared beside the checkout (as CI lays it out); LFM_COLBERT_SHARED overrides.
SHARED_DATA = Path(os.environ.get("LFM_COLBERT_SHARED", REPO.parent / "shared")) / "data"
REAL_TOKENIZER = SHARED_DATA / "lfm2-tokenizer" / "tokenizer.json"
REFERENCE_DIR = SHARED_DATA / "lfm2-colbert-reference"


def shared_path(*parts: str) -> Path:
    """A path under ../shared/data, or skip the test with the reason."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs {path} (the project's ../shared/data is not beside this checkout)")
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return shared_path()


@pytest.fixture(scope="session")
def real_tokenizer_file() -> Path | None:
    """The real LFM2 tokenizer when ../shared is present; None makes a tiny trained one instead."""
    return REAL_TOKENIZER if REAL_TOKENIZER.is_file() else None


def _write(tmp_path_factory, name: str, tokenizer_file, **kwargs) -> Path:
    from lfm_colbert.synthetic import write_checkpoint

    return write_checkpoint(tmp_path_factory.mktemp(name), tokenizer_file=tokenizer_file, **kwargs)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, real_tokenizer_file) -> Path:
    """A tiny LFM2.5 (bidirectional) checkpoint: real layout and tokenizer, random weights."""
    return _write(tmp_path_factory, "tiny-lfm2.5", real_tokenizer_file, size="tiny", variant="lfm2.5")


@pytest.fixture(scope="session")
def tiny_causal_checkpoint(tmp_path_factory, real_tokenizer_file) -> Path:
    """A tiny LFM2 (causal) checkpoint."""
    return _write(tmp_path_factory, "tiny-lfm2", real_tokenizer_file, size="tiny", variant="lfm2", seed=1)


@pytest.fixture(scope="session")
def tiny_model(tiny_checkpoint):
    from lfm_colbert import ColBERT

    return ColBERT(tiny_checkpoint, backend="torch", dtype="float32", device="cpu")
