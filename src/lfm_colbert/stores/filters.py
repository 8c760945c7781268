"""The embedded index's metadata filters, translated to Qdrant filter conditions.

    {"lang": "en", "topic": ["ocean", "space"], "year": 2020}
    -> every key must match; a list means any of its values; a document whose metadata value is a
       list matches when any element does.

Semantics are the embedded index's (SQLite's JSON comparison, lfm_colbert.index.metadata):
strings equal strings only ("1" is not 1), numbers compare by value (1 == 1.0), true and false
are the numbers 1 and 0, and a filter value of None matches nothing. To give Qdrant the same
comparisons, each point carries `_filter`: its metadata's scalar values as Qdrant should compare
them (booleans as 0 / 1, lists flattened one level) beside the metadata itself. That also avoids
matching booleans directly, which qdrant-edge-py 0.9 gets wrong (its MatchValue(True) matches the
integer 1 and never the boolean true).

The translation is a table of operators, each building conditions from a backend's `Conditions`
(qdrant-client and qdrant-edge have different classes for the same things). Equality is the only
operator the embedded filter language has today; ranges, not-equal, exists and AND / OR are one
entry each in `_OPERATORS` plus the matching `Conditions` method when it gains them.
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable, Mapping, Protocol, Sequence

from lfm_colbert.errors import InputError

FILTER_FIELD = "_filter"  # payload key of the comparable copy of the metadata
_KEY = re.compile(r"^[A-Za-z0-9_.\-]+$")  # the embedded index's rule for filter keys


class Conditions(Protocol):
    """Builds one backend's filter objects; `key` is a payload path."""

    def keyword_any(self, key: str, values: Sequence[str]) -> Any: ...
    def number_eq(self, key: str, value: float) -> Any: ...
    def has_ids(self, point_ids: Sequence[str]) -> Any: ...
    def nothing(self) -> Any: ...
    def all_of(self, conditions: Sequence[Any]) -> Any: ...
    def any_of(self, conditions: Sequence[Any]) -> Any: ...


def _comparable(value: Any) -> str | int | float | None:
    """A metadata scalar as the filters compare it; None for what no filter value can equal."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (str, int)):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    return None  # null, dicts, nested lists


def filter_payload(metadata: Mapping[str, Any]) -> dict[str, list[str | int | float]]:
    """The `_filter` payload of a document: {key: [comparable values]} for keys that have any."""
    out: dict[str, list[str | int | float]] = {}
    for key, value in metadata.items():
        values = value if isinstance(value, list) else [value]
        kept = [c for c in map(_comparable, values) if c is not None]
        if kept:
            out[key] = kept
    return out


def field_path(key: str) -> str:
    """The payload path of metadata key `key` in `_filter`; quoted, since a key may hold '.' or '-'."""
    return f'{FILTER_FIELD}."{key}"'


def _equals(c: Conditions, key: str, values: list[Any]) -> Any:
    """Metadata `key` equals any of `values` (strings by text, numbers and booleans by value)."""
    path = field_path(key)
    strings = [v for v in values if isinstance(v, str)]
    numbers = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, str)]
    parts = ([c.keyword_any(path, strings)] if strings else []) + [c.number_eq(path, n) for n in dict.fromkeys(numbers)]
    if not parts:  # only None: the embedded index's `IN (NULL)` matches nothing
        return c.nothing()
    return parts[0] if len(parts) == 1 else c.any_of(parts)


# operator -> builder(conditions, key, values). The embedded language has equality (any-of) only.
_OPERATORS: dict[str, Callable[[Conditions, str, list[Any]], Any]] = {"eq": _equals}


def _parse(key: Any, value: Any) -> tuple[str, str, list[Any]]:
    """(operator, key, values) of one filter entry, checked as the embedded index checks it."""
    if not isinstance(key, str) or not _KEY.match(key):
        raise InputError(f"bad filter key {key!r}: use letters, digits, '_', '-' or '.'")
    values = list(value) if isinstance(value, (list, tuple, set)) else [value]
    if not values:
        raise InputError(f"filter {key!r} has an empty list of values")
    for v in values:
        if v is not None and not isinstance(v, (str, int, float, bool)):
            raise InputError(f"filter {key!r}: values must be strings, numbers or booleans, not {type(v).__name__}")
        if isinstance(v, float) and not math.isfinite(v):
            raise InputError(f"filter {key!r}: {v} is not a finite number")
    return "eq", key, values


def translate(filter: Mapping[str, Any] | None, c: Conditions) -> Any:
    """A backend filter for an embedded-index filter (None for None): every key must match."""
    if filter is None:
        return None
    if not isinstance(filter, Mapping) or not filter:
        raise InputError("a filter must be a non-empty mapping of metadata key to value(s)")
    parts = [_OPERATORS[op](c, key, values) for op, key, values in (_parse(k, v) for k, v in filter.items())]
    return c.all_of(parts)
