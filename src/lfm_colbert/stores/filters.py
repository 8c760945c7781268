"""The embedded index's metadata filter language, translated to Qdrant filter conditions.

    {"lang": "en"}  {"lang": ["en", "de"]}          equal, any of ($eq, $in)
    {"lang": {"$ne": "en"}}  {"lang": {"$nin": [...]}}   not equal, none of (documents without the key match)
    {"year": {"$gte": 2020, "$lt": 2024}}            numeric ranges: $gt $gte $lt $lte, each must hold
    {"title": {"$exists": True}}                     has the key (any value, even null); False: lacks it
    {"$and": [F, ...]}  {"$or": [F, ...]}  {"$not": F}

Semantics are the embedded index's: values match by type (2020 is not "2020", True is not 1, None
matches a JSON null), numbers compare by value (1 == 1.0), a key whose value is a list matches a
condition when any element does (each condition on its own), keys are top-level and literal ("a.b"
is one key). Ranges with a string bound (ISO dates in the embedded index) have no Qdrant equivalent
on arbitrary strings and are refused with a clear error.

Qdrant compares payload values its own way (and qdrant-edge-py 0.9 turns MatchValue(True) into the
integer 1), so each point carries `_filter`, its metadata split by type: {"s": {key: [strings]},
"n": {key: [numbers]}, "b": {key: [0 / 1]}, "null": [keys with a null], "keys": [keys present]},
lists flattened one level. Every condition is then a keyword, integer or numeric-range test on one
of those fields, which Qdrant evaluates exactly as the embedded index's SQL does.
"""

from __future__ import annotations

import math
import re
from typing import Any, Mapping, Protocol, Sequence

from lfm_colbert.errors import InputError

FILTER_FIELD = "_filter"  # payload key of the typed copy of the metadata
_KEY = re.compile(r"[\w.\-]+(?: [\w.\-]+)*")  # the embedded index's rule for keys
_INT64 = (-(1 << 63), (1 << 63) - 1)
_RANGES = ("$gt", "$gte", "$lt", "$lte")
_OPS = {"$eq", "$ne", "$in", "$nin", "$exists", *_RANGES}


class Conditions(Protocol):
    """Builds one backend's filter objects (qdrant-client and qdrant-edge differ); `key` is a payload path."""

    def keyword_any(self, key: str, values: Sequence[str]) -> Any: ...
    def integer_any(self, key: str, values: Sequence[int]) -> Any: ...
    def number_range(self, key: str, gt: float | None = None, gte: float | None = None,
                     lt: float | None = None, lte: float | None = None) -> Any: ...
    def has_ids(self, point_ids: Sequence[str]) -> Any: ...
    def nothing(self) -> Any: ...
    def all_of(self, conditions: Sequence[Any]) -> Any: ...
    def any_of(self, conditions: Sequence[Any]) -> Any: ...
    def none_of(self, conditions: Sequence[Any]) -> Any: ...


# -- the payload side ------------------------------------------------------------------------------
def filter_payload(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The `_filter` payload of a document's metadata."""
    out: dict[str, Any] = {"s": {}, "n": {}, "b": {}, "null": [], "keys": list(metadata)}
    for key, value in metadata.items():
        for v in value if isinstance(value, list) else [value]:
            if v is None:
                if key not in out["null"]:
                    out["null"].append(key)
            elif isinstance(v, bool):
                out["b"].setdefault(key, []).append(int(v))
            elif isinstance(v, str):
                out["s"].setdefault(key, []).append(v)
            elif isinstance(v, (int, float)):
                out["n"].setdefault(key, []).append(v)
            # dicts and nested lists never equal a filter value
    return out


def _path(kind: str, key: str | None = None) -> str:
    """The payload path of one typed field; keys are quoted (they may hold '.', '-' or spaces)."""
    return f'{FILTER_FIELD}.{kind}' + (f'."{key}"' if key is not None else "")


# -- checking (the embedded index's rules) ---------------------------------------------------------
def _check_key(key: Any) -> str:
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise InputError(f"bad filter key {key!r}: use letters, digits, '_', '.', '-' and single inner spaces "
                         f"(operators are {', '.join(sorted(_OPS))}, $and, $or, $not)")
    return key


def _check_value(key: str, value: Any) -> Any:
    if hasattr(value, "item") and not hasattr(value, "__len__"):  # a numpy scalar
        value = value.item()
    if isinstance(value, (str, bool)) or value is None:
        return value
    if isinstance(value, int):
        if not _INT64[0] <= value <= _INT64[1]:
            raise InputError(f"filter {key!r}: {value} is outside the 64-bit integers the index can compare")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InputError(f"filter {key!r}: {value} is not a finite number")
        return value
    raise InputError(f"filter {key!r}: values are strings, numbers, booleans or None, not {type(value).__name__}")


def _values(key: str, value: Any) -> list[Any]:
    values = list(value) if isinstance(value, (list, tuple, set, frozenset)) else [value]
    if not values:
        raise InputError(f"filter {key!r} has an empty list of values")
    return [_check_value(key, v) for v in values]


# -- conditions ------------------------------------------------------------------------------------
def _equals(c: Conditions, key: str, values: list[Any]) -> Any:
    """`key` (or, for a list, one of its elements) equals one of `values`, by type."""
    parts = []
    strings = [v for v in values if isinstance(v, str)]
    if strings:
        parts.append(c.keyword_any(_path("s", key), list(dict.fromkeys(strings))))
    for n in dict.fromkeys(float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)):
        parts.append(c.number_range(_path("n", key), gte=n, lte=n))
    bools = sorted({int(v) for v in values if isinstance(v, bool)})
    if bools:
        parts.append(c.integer_any(_path("b", key), bools))
    if any(v is None for v in values):
        parts.append(c.keyword_any(_path("null"), [key]))
    return parts[0] if len(parts) == 1 else c.any_of(parts)


def _range(c: Conditions, key: str, op: str, bound: Any) -> Any:
    if isinstance(bound, str):
        raise InputError(f"filter {key!r}: a range with a text bound ({op} {bound!r}) is not available on a Qdrant "
                         "store (Qdrant orders numbers, not arbitrary text); store the value as a number")
    return c.number_range(_path("n", key), **{op[1:]: float(bound)})


def _key_condition(c: Conditions, key: str, value: Any) -> Any:
    """Every condition given for one key: a value, a list (any of), or a mapping of operators."""
    if hasattr(value, "to_dict"):  # lfm_colbert.index.filters.Filter
        value = value.to_dict()
    if not isinstance(value, Mapping):
        return _equals(c, key, _values(key, value))
    if not value:
        raise InputError(f"filter {key!r} has an empty mapping of operators")
    parts = []
    for op, arg in value.items():
        if op not in _OPS:
            raise InputError(f"filter {key!r}: unknown operator {op!r} (use {', '.join(sorted(_OPS))})")
        if op == "$exists":
            if not isinstance(arg, bool):
                raise InputError(f"filter {key!r}: $exists takes true or false, not {arg!r}")
            present = c.keyword_any(_path("keys"), [key])
            parts.append(present if arg else c.none_of([present]))
        elif op in _RANGES:
            bound = None if isinstance(arg, (list, tuple, set)) else _check_value(key, arg)
            if isinstance(bound, bool) or bound is None:
                raise InputError(f"filter {key!r}: {op} takes one number or string, not {arg!r}")
            parts.append(_range(c, key, op, bound))
        else:
            if op in ("$eq", "$ne") and isinstance(arg, (list, tuple, set)):
                raise InputError(f"filter {key!r}: {op} takes one value; use {'$in' if op == '$eq' else '$nin'} for a list")
            eq = _equals(c, key, _values(key, arg))
            parts.append(c.none_of([eq]) if op in ("$ne", "$nin") else eq)  # without the key: matches
    return parts[0] if len(parts) == 1 else c.all_of(parts)


def _compile(f: Any, c: Conditions) -> Any:
    if hasattr(f, "to_dict"):
        f = f.to_dict()
    if not isinstance(f, Mapping) or not f:
        raise InputError("a filter must be a non-empty mapping of metadata key to value(s) (see lfm_colbert.stores.filters)")
    parts = []
    for key, value in f.items():
        if key in ("$and", "$or"):
            if not isinstance(value, (list, tuple)) or not value:
                raise InputError(f"{key} takes a non-empty list of filters")
            subs = [_compile(sub, c) for sub in value]
            parts.append(c.all_of(subs) if key == "$and" else c.any_of(subs))
        elif key == "$not":
            parts.append(c.none_of([_compile(value, c)]))
        else:
            parts.append(_key_condition(c, _check_key(key), value))
    return parts[0] if len(parts) == 1 else c.all_of(parts)


def translate(filter: Mapping[str, Any] | None, c: Conditions) -> Any:
    """A backend filter for an embedded-index filter (None for None)."""
    if filter is None:
        return None
    return c.all_of([_compile(filter, c)])
