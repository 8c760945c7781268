"""The metadata filter language: its structure, its checks, and its SQL.

A filter is a JSON-able mapping. Every entry must hold (they combine with AND):

    {"lang": "en"}                          equal
    {"lang": ["en", "de"]}                  any of                    (same as {"$in": [...]})
    {"lang": {"$eq": "en"}}                 equal
    {"lang": {"$ne": "en"}}                 not equal                 (documents without the key match)
    {"lang": {"$nin": ["en", "de"]}}        none of                   (documents without the key match)
    {"year": {"$gte": 2020, "$lt": 2024}}   ranges: $gt $gte $lt $lte, each must hold
    {"title": {"$exists": True}}            has the key (any value, even null); False: lacks it
    {"$and": [F, ...]}  {"$or": [F, ...]}  {"$not": F}       composition of filters F

Values are strings, finite numbers (integers within 64 bits), booleans or None (JSON null); they
match by type: 2020 does not equal "2020", and True is not 1. A range bound that is a number
compares with numeric values only, a string bound with string values only, in code point order
(so ISO dates and times, "2021-05-01", order as they should). A key whose metadata value is a list
(`"tags": ["bird", "cold"]`) matches a condition when any element does; each condition looks at the
elements on its own. Keys are top-level metadata keys, matched literally ("a.b" is one key).

In Python, `Field` builds the same structure: `(Field("year") >= 2020) & Field("lang").isin(["en", "de"])`
is a `Filter`, a read-only mapping that `Index.search(filter=...)` and `Index.list` take as they
take a dict. `filter_sql(filter)` compiles either to an SQLite WHERE clause over `docs.metadata`;
the command-line syntax (`lang=en AND year>=2020`) is read by `lfm_colbert.index.filter_syntax`.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Iterator, Mapping, Protocol, Sequence

from lfm_colbert.errors import InputError

__all__ = ["Emitter", "Field", "Filter", "compile_filter", "filter_keys", "filter_sql"]

_OPS = {"$eq", "$ne", "$in", "$nin", "$gt", "$gte", "$lt", "$lte", "$exists"}
_RANGE_SQL = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
# Letters, digits, '_', '.', '-' and inner spaces (CSV columns such as "Publication Year").
_KEY = re.compile(r"[\w.\-]+(?: [\w.\-]+)*")
INT64 = (-(1 << 63), (1 << 63) - 1)


# -- validation -------------------------------------------------------------------------------------


def check_text(text: str, what: str) -> None:
    """SQLite and JSON need valid UTF-8: a lone surrogate is an input error, not a crash later."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(f"{what} {text!r} is not valid Unicode (it holds a lone surrogate)") from None


def _check_key(key: Any) -> str:
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise InputError(
            f"bad filter key {key!r}: use letters, digits, '_', '.', '-' and single inner spaces "
            f"(operators are {', '.join(sorted(_OPS))}, $and, $or, $not)"
        )
    check_text(key, "filter key")
    return key


def _check_value(key: str, value: Any) -> Any:
    if isinstance(value, str):
        check_text(value, f"filter {key!r}: value")
    elif isinstance(value, bool) or value is None:
        pass
    elif isinstance(value, int):
        if not INT64[0] <= value <= INT64[1]:
            raise InputError(f"filter {key!r}: {value} is outside the 64-bit integers the index can compare")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise InputError(f"filter {key!r}: {value} is not a finite number")
    elif hasattr(value, "item") and not hasattr(value, "__len__"):  # a numpy scalar
        return _check_value(key, value.item())
    else:
        raise InputError(f"filter {key!r}: values are strings, numbers, booleans or None, not {type(value).__name__}")
    return value


def _values(key: str, value: Any) -> list[Any]:
    values = list(value) if isinstance(value, (list, tuple, set, frozenset)) else [value]
    if not values:
        raise InputError(f"filter {key!r} has an empty list of values")
    return [_check_value(key, v) for v in values]


# -- SQL --------------------------------------------------------------------------------------------


def _match(value_sql: str, type_sql: str, op: str, values: list[Any], params: list[Any]) -> str:
    """SQL true when one JSON value (its SQL value and json type) satisfies `op` with `values`."""
    if op == "$in":
        parts = []
        plain = [v for v in values if v is not None and not isinstance(v, bool)]
        if plain:  # typed: the text "1" is not the number 1, and true (stored as 1) is not 1
            parts.append(f"({type_sql} IN ('integer', 'real', 'text') AND {value_sql} IN ({','.join('?' * len(plain))}))")
            params.extend(plain)
        for literal, json_type in ((True, "true"), (False, "false"), (None, "null")):
            if any(v is literal for v in values):
                parts.append(f"{type_sql} = '{json_type}'")
        return "(" + " OR ".join(parts) + ")"
    bound = values[0]
    if isinstance(bound, str):
        params.append(bound)
        return f"({type_sql} = 'text' AND {value_sql} {_RANGE_SQL[op]} ?)"
    params.append(bound)
    return f"({type_sql} IN ('integer', 'real') AND {value_sql} {_RANGE_SQL[op]} ?)"


def _condition(key: str, op: str, values: list[Any], params: list[Any]) -> str:
    """One condition on one key: the scalar value matches, or (for a list) any element does."""
    path = f"'$.\"{key}\"'"  # safe to inline: _check_key allows no quote of either kind
    if op == "$exists":
        return f"(json_type(metadata, {path}) IS {'NOT ' if values[0] else ''}NULL)"
    negate = op in ("$ne", "$nin")
    op = "$in" if op in ("$eq", "$ne", "$in", "$nin") else op
    scalar = _match(f"json_extract(metadata, {path})", f"json_type(metadata, {path})", op, values, params)
    element = _match("value", "type", op, values, params)
    # Without the key every test is NULL: COALESCE makes that false, so NOT (for $ne) makes it true.
    sql = (f"COALESCE({scalar} OR (json_type(metadata, {path}) = 'array' AND "
           f"EXISTS (SELECT 1 FROM json_each(metadata, {path}) WHERE {element})), 0)")
    return f"(NOT {sql})" if negate else sql


class _SQL:
    """Emits SQLite for `compile_filter`; `params` fill its ?s, in order."""

    def __init__(self) -> None:
        self.params: list[Any] = []

    def condition(self, key: str, op: str, values: list[Any]) -> str:
        return _condition(key, op, values, self.params)

    def all_of(self, parts: list[str]) -> str:
        return "(" + " AND ".join(parts) + ")"

    def any_of(self, parts: list[str]) -> str:
        return "(" + " OR ".join(parts) + ")"

    def none_of(self, part: str) -> str:
        return f"(NOT {part})"


class Emitter(Protocol):
    """What a backend makes of a checked filter (SQL here; Qdrant conditions in lfm_colbert.stores.filters).
    `condition` gets one operator of `_OPS` on one key with checked values ($in for a bare value or list)."""

    def condition(self, key: str, op: str, values: list[Any]) -> Any: ...
    def all_of(self, parts: list[Any]) -> Any: ...
    def any_of(self, parts: list[Any]) -> Any: ...
    def none_of(self, part: Any) -> Any: ...


def _key_conditions(key: str, value: Any, out: Emitter) -> Any:
    """All conditions given for one key: a value, a list (any of), or a mapping of operators."""
    if isinstance(value, Filter):
        value = value.to_dict()
    if not isinstance(value, Mapping):
        return out.condition(key, "$in", _values(key, value))
    if not value:
        raise InputError(f"filter {key!r} has an empty mapping of operators")
    parts = []
    for op, arg in value.items():
        if op not in _OPS:
            raise InputError(f"filter {key!r}: unknown operator {op!r} (use {', '.join(sorted(_OPS))})")
        if op == "$exists":
            if not isinstance(arg, bool):
                raise InputError(f"filter {key!r}: $exists takes true or false, not {arg!r}")
            parts.append(out.condition(key, op, [arg]))
        elif op in _RANGE_SQL:
            bound = None if isinstance(arg, (list, tuple, set)) else _check_value(key, arg)
            if isinstance(bound, bool) or bound is None:
                raise InputError(f"filter {key!r}: {op} takes one number or string, not {arg!r}")
            parts.append(out.condition(key, op, [bound]))
        else:
            if op in ("$eq", "$ne") and isinstance(arg, (list, tuple, set)):
                raise InputError(f"filter {key!r}: {op} takes one value; use {'$in' if op == '$eq' else '$nin'} for a list")
            parts.append(out.condition(key, op, _values(key, arg)))
    return parts[0] if len(parts) == 1 else out.all_of(parts)


def compile_filter(f: Any, out: Emitter) -> Any:
    """Check a filter (a dict or `Filter`) and build it with `out`: the one walk every backend shares."""
    if isinstance(f, Filter):
        f = f.to_dict()
    if not isinstance(f, Mapping) or not f:
        raise InputError("a filter must be a non-empty mapping of metadata key to value(s) (see lfm_colbert.index.filters)")
    parts = []
    for key, value in f.items():
        if key in ("$and", "$or"):
            if not isinstance(value, (list, tuple)) or not value:
                raise InputError(f"{key} takes a non-empty list of filters")
            subs = [compile_filter(sub, out) for sub in value]
            parts.append(out.all_of(subs) if key == "$and" else out.any_of(subs))
        elif key == "$not":
            parts.append(out.none_of(compile_filter(value, out)))
        else:
            parts.append(_key_conditions(_check_key(key), value, out))
    return parts[0] if len(parts) == 1 else out.all_of(parts)


def filter_sql(filter: Mapping[str, Any]) -> tuple[str, list[Any]]:
    """An SQLite WHERE clause over `docs.metadata` for `filter` (a dict or `Filter`), and its parameters."""
    sql = _SQL()
    return compile_filter(filter, sql), sql.params


def filter_keys(filter: Mapping[str, Any]) -> set[str]:
    """The metadata keys a filter looks at (for telling a user about keys no document has)."""
    if isinstance(filter, Filter):
        filter = filter.to_dict()
    keys: set[str] = set()
    for key, value in filter.items():
        if key in ("$and", "$or"):
            for sub in value:
                keys |= filter_keys(sub)
        elif key == "$not":
            keys |= filter_keys(value)
        else:
            keys.add(key)
    return keys


# -- Python expressions ------------------------------------------------------------------------------


class Filter(Mapping[str, Any]):
    """A filter built from `Field` conditions with & (and), | (or) and ~ (not); a read-only mapping
    holding the dict form, so it goes wherever a filter dict does."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self._spec = dict(spec.to_dict() if isinstance(spec, Filter) else spec)
        filter_sql(self._spec)  # checked once, when built

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(self._spec))

    def __getitem__(self, key: str) -> Any:
        return self._spec[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._spec)

    def __len__(self) -> int:
        return len(self._spec)

    def __and__(self, other: Mapping[str, Any]) -> "Filter":
        return Filter({"$and": [self.to_dict(), dict(other)]})

    def __or__(self, other: Mapping[str, Any]) -> "Filter":
        return Filter({"$or": [self.to_dict(), dict(other)]})

    def __invert__(self) -> "Filter":
        return Filter({"$not": self.to_dict()})

    def __repr__(self) -> str:
        return f"Filter({self._spec!r})"


class Field:
    """One metadata key, for building filters: `Field("year") >= 2020`, `Field("lang").isin(["en", "de"])`."""

    def __init__(self, key: str) -> None:
        self.key = _check_key(key)

    def _op(self, op: str, value: Any) -> Filter:
        return Filter({self.key: {op: value}})

    def __eq__(self, value: Any) -> Filter:  # type: ignore[override]
        return self._op("$eq", value)

    def __ne__(self, value: Any) -> Filter:  # type: ignore[override]
        return self._op("$ne", value)

    def __gt__(self, value: Any) -> Filter:
        return self._op("$gt", value)

    def __ge__(self, value: Any) -> Filter:
        return self._op("$gte", value)

    def __lt__(self, value: Any) -> Filter:
        return self._op("$lt", value)

    def __le__(self, value: Any) -> Filter:
        return self._op("$lte", value)

    def isin(self, values: Sequence[Any]) -> Filter:
        return self._op("$in", list(values))

    def notin(self, values: Sequence[Any]) -> Filter:
        return self._op("$nin", list(values))

    def exists(self, present: bool = True) -> Filter:
        return self._op("$exists", present)

    __hash__ = None  # type: ignore[assignment]
