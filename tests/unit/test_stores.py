"""Store specs, the resolver, and the filter translation's payload side (no engine needed)."""

from __future__ import annotations

import pytest

from lfm_colbert.errors import InputError
from lfm_colbert.stores import is_store_spec, open_store
from lfm_colbert.stores.filters import filter_payload, translate
from lfm_colbert.stores.spec import parse_spec


@pytest.mark.parametrize("spec, want", [
    ("qdrant+http://localhost:6333/docs", dict(kind="server", url="http://localhost:6333", collection="docs", prefix=None)),
    ("qdrant+https://q.example.com/api/v1/docs?grpc=1&dense=1&prefetch=200",
     dict(kind="server", url="https://q.example.com", prefix="api/v1", collection="docs", grpc=True, dense=True, prefetch=200)),
    ("qdrant+path:some/dir", dict(kind="path", path="some/dir", collection="lfm_colbert", dense=None)),
    ("qdrant+path:/abs/dir?collection=mine&dense=0", dict(kind="path", path="/abs/dir", collection="mine", dense=False)),
    ("qdrant+edge:store?prefetch=50", dict(kind="edge", path="store", prefetch=50)),
    ("QDRANT+MEMORY:", dict(kind="memory", collection="lfm_colbert")),
])
def test_specs(spec, want):
    got = parse_spec(spec)
    assert {k: getattr(got, k) for k in want} == want
    assert parse_spec(str(got)) == got  # prints back as a spec that means the same


@pytest.mark.parametrize("spec, message", [
    ("qdrant+ftp://host/c", "unknown store"),
    ("qdrant+http://localhost:6333", "COLLECTION"),
    ("qdrant+http://localhost:6333/docs?collection=x", "in the path"),
    ("qdrant+path:", "give a directory"),
    ("qdrant+path:d?prefetch=0", "positive"),
    ("qdrant+path:d?dense=maybe", "takes 1 or 0"),
    ("qdrant+path:d?color=red", "unknown option"),
    ("qdrant+path:d?grpc=1", "applies to a server"),
    ("qdrant+path:d?collection=a/b", "bad collection name"),
    ("qdrant+edge:d?collection=x", "one collection"),
    ("qdrant+memory:somewhere", "no path"),
])
def test_bad_specs(spec, message):
    with pytest.raises(InputError, match=message):
        parse_spec(spec)


def test_resolver_keeps_options_to_their_kind(tmp_path):
    assert is_store_spec("qdrant+edge:x") and not is_store_spec(str(tmp_path)) and not is_store_spec(None)
    with pytest.raises(InputError, match="compress"):
        open_store("qdrant+memory:", compress=2)
    with pytest.raises(InputError, match="applies to a Qdrant store"):
        open_store(tmp_path / "idx", dense=True)
    index = open_store(tmp_path / "idx", {"model_id": "v", "dim": 4}, compress=None, dense=None)
    assert type(index).__name__ == "Index"


def test_filter_payload_splits_metadata_by_type():
    meta = {"lang": "en", "flag": True, "off": False, "n": 3, "x": 1.5, "tags": ["a", 2, True, None, {"d": 1}, [1]],
            "none": None, "obj": {"k": "v"}, "a.b": "dotted"}
    assert filter_payload(meta) == {
        "s": {"lang": ["en"], "tags": ["a"], "a.b": ["dotted"]}, "n": {"n": [3], "x": [1.5], "tags": [2]},
        "b": {"flag": [1], "off": [0], "tags": [1]}, "null": ["tags", "none"], "keys": list(meta)}


class Recorder:
    """Conditions that record what the translation asked for."""

    def keyword_any(self, key, values):
        return ("any", key, tuple(values))

    def integer_any(self, key, values):
        return ("int", key, tuple(values))

    def number_range(self, key, gt=None, gte=None, lt=None, lte=None):
        return ("range", key, gt, gte, lt, lte)

    def has_ids(self, ids):
        return ("ids", tuple(ids))

    def nothing(self):
        return ("nothing",)

    def all_of(self, conds):
        return ("all", *conds)

    def any_of(self, conds):
        return ("or", *conds)

    def none_of(self, conds):
        return ("not", *conds)


def test_translation_shape():
    c = Recorder()
    assert translate(None, c) is None
    assert translate({"lang": "en"}, c) == ("all", ("any", '_filter.s."lang"', ("en",)))
    got = translate({"a.b": ["x", 2, True, 2.0, None]}, c)
    assert got == ("all", ("or", ("any", '_filter.s."a.b"', ("x",)), ("range", '_filter.n."a.b"', None, 2.0, None, 2.0),
                           ("int", '_filter.b."a.b"', (1,)), ("any", "_filter.null", ("a.b",))))
    assert translate({"$not": {"y": {"$gte": 1, "$exists": True}}}, c) == \
        ("all", ("not", ("all", ("range", '_filter.n."y"', None, 1.0, None, None), ("any", "_filter.keys", ("y",)))))
    for bad in ({}, [], {"": 1}, {"k  k": 1}, {"k": []}, {"k": {"$gt": "2021"}}, {"k": float("inf")}, {"$and": {}}):
        with pytest.raises(InputError):
            translate(bad, c)
