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
of those fields, which Qdrant evaluates exactly as the embedded index's SQL does. The filter is
checked and walked by lfm_colbert.index.filters.compile_filter, as the SQL is; this module only
says what each condition becomes.
"""

from __future__ import annotations

from typing import Any, Mapping, Protocol, Sequence

from lfm_colbert.errors import InputError
from lfm_colbert.index.filters import compile_filter

FILTER_FIELD = "_filter"  # payload key of the typed copy of the metadata
_RANGES = ("$gt", "$gte", "$lt", "$lte")


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


class _Emitter:
    """Qdrant conditions for lfm_colbert.index.filters.compile_filter, which checks the filter and walks it."""

    def __init__(self, c: Conditions) -> None:
        self.c = c

    def condition(self, key: str, op: str, values: list[Any]) -> Any:
        c = self.c
        if op == "$exists":
            present = c.keyword_any(_path("keys"), [key])
            return present if values[0] else c.none_of([present])
        if op in _RANGES:
            return _range(c, key, op, values[0])
        eq = _equals(c, key, values)
        return c.none_of([eq]) if op in ("$ne", "$nin") else eq  # without the key: $ne / $nin match

    def all_of(self, parts: list[Any]) -> Any:
        return self.c.all_of(parts)

    def any_of(self, parts: list[Any]) -> Any:
        return self.c.any_of(parts)

    def none_of(self, part: Any) -> Any:
        return self.c.none_of([part])


def translate(filter: Mapping[str, Any] | None, c: Conditions) -> Any:
    """A backend filter for an embedded-index filter (None for None)."""
    if filter is None:
        return None
    return c.all_of([compile_filter(filter, _Emitter(c))])
