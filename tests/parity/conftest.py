"""Fixtures for parity tests: one full-size (350M, random weights) checkpoint per session."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

# Test modules here do `from conftest import shared_path`; with a conftest.py in this folder that
# import finds this file, so re-export the helper from tests/conftest.py (loaded by path, as a plain module).
_spec = importlib.util.spec_from_file_location("_lfm_tests_conftest", Path(__file__).resolve().parents[1] / "conftest.py")
_top = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_top)
shared_path = _top.shared_path


@pytest.fixture(scope="session")
def full_checkpoint(tmp_path_factory, real_tokenizer_file) -> Path:
    """The real LFM2.5-ColBERT-350M layout and shapes in bf16 (about 707 MB), random weights."""
    from lfm_colbert.synthetic import write_checkpoint

    return write_checkpoint(
        tmp_path_factory.mktemp("full-lfm2.5"), size="full", dtype="bfloat16", tokenizer_file=real_tokenizer_file
    )
