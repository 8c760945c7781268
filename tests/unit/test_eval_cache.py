"""The conversion cache used by `eval --precision` follows the source weights, not just its path."""

from __future__ import annotations

import shutil

from lfm_colbert.eval.runner import converted_path
from lfm_colbert.synthetic import write_checkpoint


def test_new_weights_at_the_same_path_get_a_new_cache_entry(tiny_checkpoint, real_tokenizer_file, tmp_path):
    src = tmp_path / "model"
    shutil.copytree(tiny_checkpoint, src)
    first = converted_path(str(src), "8bit", tmp_path / "cache")
    assert converted_path(str(src), "8bit", tmp_path / "cache") == first  # stable for the same weights
    write_checkpoint(src, size="tiny", seed=123, tokenizer_file=real_tokenizer_file)  # retrained in place
    assert converted_path(str(src), "8bit", tmp_path / "cache") != first
    assert converted_path(str(src), "4bit", tmp_path / "cache") != converted_path(str(src), "8bit", tmp_path / "cache")
