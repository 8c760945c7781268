"""Metadata, filters and an independent oracle for the filter language, shared by the Qdrant filter tests.

The oracle is the embedded index's documented semantics written out in Python (lfm_colbert's
filter language: typed equality, any element of a list, $ne / $nin match documents without the
key, numeric and text ranges, $exists, $and / $or / $not). It was checked against the embedded
index's own SQL compiler on these very cases.
"""

from __future__ import annotations

import operator

_CMP = {"$gt": operator.gt, "$gte": operator.ge, "$lt": operator.lt, "$lte": operator.le}


def _num(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _eq(x, t):
    if t is None:
        return x is None
    if isinstance(t, bool):
        return isinstance(x, bool) and x == t
    if isinstance(t, str):
        return isinstance(x, str) and x == t
    return _num(x) and x == t


def _cond(meta, key, op, values):
    if op == "$exists":
        return (key in meta) == values[0]
    if key not in meta:
        return op in ("$ne", "$nin")
    v = meta[key]
    items = v if isinstance(v, list) else [v]
    if op in _CMP:
        b = values[0]
        ok = lambda x: (isinstance(x, str) and _CMP[op](x, b)) if isinstance(b, str) else (_num(x) and _CMP[op](x, b))
        return any(ok(x) for x in items)
    hit = any(_eq(x, t) for x in items for t in values)
    return not hit if op in ("$ne", "$nin") else hit


def matches(meta, f):
    for key, value in f.items():
        if key == "$and":
            ok = all(matches(meta, s) for s in value)
        elif key == "$or":
            ok = any(matches(meta, s) for s in value)
        elif key == "$not":
            ok = not matches(meta, value)
        elif isinstance(value, dict):
            ok = all(_cond(meta, key, op, list(arg) if op in ("$in", "$nin") else [arg]) for op, arg in value.items())
        else:
            ok = _cond(meta, key, "$in", list(value) if isinstance(value, (list, tuple)) else [value])
        if not ok:
            return False
    return True


METADATA = [
    {"lang": "en", "year": 2020, "tags": ["bird", "cold"], "flag": True, "score": 0.5},
    {"lang": "de", "year": 2021.0, "tags": ["warm"], "flag": False, "score": 1},
    {"lang": "fr", "year": "2020", "tags": [], "flag": 1, "note": None},
    {"lang": "en", "tags": ["bird", 3, True, None, ["nested"]], "a.b": "dotted", "Publication Year": 1999},
    {"lang": ["en", "ja"], "year": 2024, "nested": {"k": "v"}, "date": "2021-05-01"},
    {"year": 2019, "flag": "true", "note": "x", "date": "2020-12-31"},
    {},
]

FILTERS = [
    {"lang": "en"}, {"lang": ["de", "fr"]}, {"lang": {"$eq": "ja"}}, {"lang": {"$in": ["ja", "xx"]}},
    {"year": 2020}, {"year": 2021}, {"year": "2020"}, {"year": [2020, "2020"]}, {"score": 1.0}, {"score": 0.5},
    {"flag": True}, {"flag": False}, {"flag": 1}, {"flag": "true"}, {"flag": [True, 1]},
    {"note": None}, {"tags": None}, {"tags": "bird"}, {"tags": 3}, {"tags": True}, {"tags": ["cold", "warm"]},
    {"tags": "nested"}, {"nested": "v"}, {"a.b": "dotted"}, {"Publication Year": 1999},
    {"lang": {"$ne": "en"}}, {"lang": {"$nin": ["en", "de"]}}, {"flag": {"$ne": True}}, {"note": {"$ne": None}},
    {"year": {"$gte": 2020}}, {"year": {"$gt": 2020, "$lte": 2024}}, {"year": {"$lt": 2020.5}},
    {"score": {"$gte": 0.5, "$lt": 1}}, {"tags": {"$gt": 2}},
    {"note": {"$exists": True}}, {"note": {"$exists": False}}, {"tags": {"$exists": True}},
    {"$or": [{"lang": "de"}, {"year": 2019}]}, {"$and": [{"lang": "en"}, {"tags": "bird"}]},
    {"$not": {"lang": "en"}}, {"$not": {"$or": [{"flag": True}, {"flag": False}]}},
    {"lang": "en", "year": {"$exists": False}}, {"$or": [{"tags": {"$exists": False}}, {"year": {"$in": [2019, 2024]}}]},
    {"missing": "x"}, {"missing": {"$ne": "x"}}, {"lang": ["en", None]},
]

TEXT_RANGES = [{"date": {"$gte": "2021-01-01"}}, {"year": {"$lt": "2021"}}]  # the embedded index only
