"""The keyword index under SIGKILL: a writer killed while building it (an index made before it
existed, or `rebuild_lexical`) leaves the postings as they were, and the next writer builds them."""

from __future__ import annotations

import shutil

import pytest
from faultkit import base_index, lexical_in_step, run_writer, snapshot

from lfm_colbert.errors import IndexFormatError
from lfm_colbert.index import Index


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    path = tmp_path_factory.mktemp("lexkill") / "exact"
    base_index(path, "exact")
    return path


@pytest.mark.parametrize("made_before", [False, True])
def test_a_writer_killed_while_building_the_keyword_index(base, tmp_path, made_before, drop_lexical):
    path = tmp_path / "idx"
    shutil.copytree(base, path)
    if made_before:
        drop_lexical(path)
    before = snapshot(Index(path))
    assert run_writer(path, "rebuild", pause="lexical:before-commit") == "killed"
    index = Index(path)
    assert snapshot(index) == before
    index.verify_files()
    if made_before:  # still none: the clear error, and semantic search as before
        with pytest.raises(IndexFormatError, match="rebuild-lexical"):
            index.search("t1", mode="lexical")
    else:
        lexical_in_step(index)
    index.add_vectors([v for v in __import__("faultkit").vectors(1, seed=3)], ids=["after"], texts=["t1 after"])
    lexical_in_step(index)
    assert {h.id for h in index.search("t1", mode="lexical")} == {"d1", "after"}
