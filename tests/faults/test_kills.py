"""A writer SIGKILLed at any commit window leaves an index that opens, verifies and reads as either
the state before its write or the one after, and the next writer removes what it left behind
(issue 14: kills at every commit window of add, upsert, delete, compaction, merging and codec
training, on exact and compressed indexes)."""

from __future__ import annotations

import shutil

import pytest
from faultkit import base_index, lexical_in_step, queries, run_writer, snapshot, write_op

from lfm_colbert.index import Index

# The pause points of each write, in the order it reaches them (lfm_colbert.index.store.pause_point).
ADD = ["add:segments-written", "add:before-commit", "add:committed"]
REWRITE = ["rewrite:segments-written", "rewrite:before-commit", "rewrite:committed"]
CASES = (
    [("exact", "add", p) for p in ADD]
    + [("exact", "upsert", p) for p in ADD]
    + [("exact", "delete", p) for p in ["delete:before-commit", "delete:committed", *REWRITE, "purge:files-removed"]]
    + [("exact", "merge", p) for p in REWRITE[1:]]
    + [("exact", "compact", p) for p in REWRITE[:2]]
    + [("plaid", "add", p) for p in ADD[1:]]
    + [("plaid", "upsert", "add:before-commit")]
    + [("plaid", "delete", p) for p in ["delete:before-commit", "rewrite:before-commit", "purge:files-removed"]]
    + [("untrained", "train", p) for p in ["train:codec-saved", "train:codec-renamed", "train:codec-written",
                                            "rewrite:before-commit", "rewrite:committed"]]
)
# Points before the write's own commit: the state must be the one before it.
BEFORE_COMMIT = {"add:segments-written", "add:before-commit", "delete:before-commit"}


@pytest.fixture(scope="module")
def states(tmp_path_factory):
    """Per kind, the index before any write, and per (kind, op) what a write that finishes leaves."""
    root = tmp_path_factory.mktemp("kills")
    out = {}
    for kind in ("exact", "plaid", "untrained"):
        base_index(root / kind, kind)
        out[kind] = root / kind
        for op in {op for k, op, _ in CASES if k == kind}:
            done = root / f"{kind}-{op}"
            shutil.copytree(root / kind, done)
            write_op(done, op)
            out[kind, op] = done
    return out


def _on_disk(path):
    return {p.name for p in (path / "segments").iterdir()} | {p.name for p in path.iterdir() if p.name.startswith(".codec-tmp")}


@pytest.mark.parametrize("kind, op, point", CASES)
def test_a_writer_killed_at_a_commit_window(states, tmp_path, kind, op, point):
    path = tmp_path / "idx"
    shutil.copytree(states[kind], path)
    expected_dir = states[kind] if point in BEFORE_COMMIT else states[kind, op]
    assert run_writer(path, op, pause=point) == "killed"

    index = Index(path)
    expected = Index(expected_dir)
    assert snapshot(index) == snapshot(expected)  # all of the write, or none of it
    index.verify_files()
    lexical_in_step(index)  # the keyword index is written in the same transaction: never out of step
    words = "t1 t2 t7 t33 t41 t60 new up"
    lex = [sorted((h.id, round(h.score, 9)) for h in ix.search(words, k=80, mode="lexical")) for ix in (index, expected)]
    assert lex[0] == lex[1] and lex[0]
    qs = queries(3)
    got = index.search_vectors(qs, k=10)
    assert all(len(hits) == 10 for hits in got)
    if kind == "exact":  # exact scores do not depend on how documents are laid out in segments
        want = expected.search_vectors(qs, k=10)
        assert [[h.id for h in hits] for hits in got] == [[h.id for h in hits] for hits in want]

    # The next writer finishes or removes what the killed one left, and works normally.
    index.add_vectors(queries(1, seed=5), ids=["after"])
    index.compact()
    named = {f"{r['id']:06d}" for r in index.catalog.segments()}
    assert _on_disk(path) == named  # only the live segments: nothing left of the killed writer
    assert not {f"{s:06d}" for s in index.catalog.pending()} & _on_disk(path)  # a spare id reserved, unused
    assert snapshot(index) == {**snapshot(expected), "after": (None, {}, None)}
    index.verify_files()
    lexical_in_step(index)
