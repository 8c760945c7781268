"""The metadata filter language: its structure, its command-line syntax, and its SQL.

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
take a dict. `parse_filter("lang=en AND year>=2020")` reads the command-line syntax
(see `SYNTAX`); `filter_sql(filter)` compiles either to an SQLite WHERE clause over `docs.metadata`.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Iterator, Mapping, Protocol, Sequence

from lfm_colbert.errors import InputError

__all__ = ["Field", "Filter", "SYNTAX", "filter_keys", "filter_sql", "parse_filter", "parse_filters"]

SYNTAX = """\
filters (--filter, repeatable; every --filter must hold, so repeated keys combine with AND):
  lang=en            equal; numbers and true/false also match as such (year=2020 matches 2020 and "2020")
  lang=en,de         any of (a comma separates values; quote a value that holds one: "a,b")
  lang!=en           not equal; lang!=en,de: none of (documents without the key match too)
  year>=2020         ranges: > >= < <=; a number compares with numbers, other values with text
  date<2021-06-01    as text, which orders ISO dates and times correctly
  title=*            has the key, with any value; title!=* lacks it
  'lang=en OR lang=de'          AND, OR, NOT (upper case) and parentheses combine conditions in one
  'year>=2020 AND NOT (tags=draft OR tags=old)'   --filter; quote values that hold spaces there
  A key whose value is a list (tags: [bird, cold]) matches when any element does, so
  --filter tags=bird --filter tags=cold finds documents tagged with both."""

_OPS = {"$eq", "$ne", "$in", "$nin", "$gt", "$gte", "$lt", "$lte", "$exists"}
_RANGE_SQL = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
# Letters, digits, '_', '.', '-' and inner spaces (CSV columns such as "Publication Year").
_KEY = re.compile(r"[\w.\-]+(?: [\w.\-]+)*")
_INT64 = (-(1 << 63), (1 << 63) - 1)


# -- validation -------------------------------------------------------------------------------------


def _check_text(text: str, what: str) -> None:
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
    _check_text(key, "filter key")
    return key


def _check_value(key: str, value: Any) -> Any:
    if isinstance(value, str):
        _check_text(value, f"filter {key!r}: value")
    elif isinstance(value, bool) or value is None:
        pass
    elif isinstance(value, int):
        if not _INT64[0] <= value <= _INT64[1]:
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


# -- the command-line syntax ------------------------------------------------------------------------

_KEYWORD = re.compile(r"(?<![^\s(])(AND|OR|NOT)(?=[\s(]|$)")
_BARE_KEY = re.compile(r"[\w.\-]+")
_OPERATORS = ("!=", ">=", "<=", "=", ">", "<")
_CLI_OP = {"=": "$in", "!=": "$nin", ">": "$gt", ">=": "$gte", "<": "$lt", "<=": "$lte"}


class _Parser:
    """Recursive descent over one --filter argument: expr = and (OR and)*; and = not (AND not)*;
    not = NOT not | ( expr ) | KEY OP VALUE[,VALUE...]."""

    def __init__(self, text: str) -> None:
        self.text, self.pos = text, 0

    def fail(self, why: str) -> InputError:
        return InputError(f"bad --filter {self.text!r}: {why} (see --help for the syntax)")

    def skip(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def keyword(self, word: str) -> bool:
        self.skip()
        m = _KEYWORD.match(self.text, self.pos)
        if m and m.group(1) == word:
            self.pos = m.end()
            return True
        return False

    def parse(self) -> dict[str, Any]:
        out = self.expr()
        self.skip()
        if self.pos < len(self.text):
            raise self.fail(f"unexpected {self.text[self.pos:]!r}; quote values that hold spaces")
        return out

    def expr(self) -> dict[str, Any]:
        parts = [self.conj()]
        while self.keyword("OR"):
            parts.append(self.conj())
        return parts[0] if len(parts) == 1 else {"$or": parts}

    def conj(self) -> dict[str, Any]:
        parts = [self.neg()]
        while self.keyword("AND"):
            parts.append(self.neg())
        return parts[0] if len(parts) == 1 else {"$and": parts}

    def neg(self) -> dict[str, Any]:
        if self.keyword("NOT"):
            return {"$not": self.neg()}
        self.skip()
        if self.text.startswith("(", self.pos):
            self.pos += 1
            inner = self.expr()
            self.skip()
            if not self.text.startswith(")", self.pos):
                raise self.fail("a '(' is not closed")
            self.pos += 1
            return inner
        return self.condition(whole_rest=False)

    def quoted(self) -> str:
        quote = self.text[self.pos]
        end = self.text.find(quote, self.pos + 1)
        if end < 0:
            raise self.fail(f"a {quote} quote is not closed")
        value = self.text[self.pos + 1 : end]
        self.pos = end + 1
        return value

    def condition(self, whole_rest: bool) -> dict[str, Any]:
        self.skip()
        if self.pos < len(self.text) and self.text[self.pos] in "\"'":
            key = self.quoted()
        else:
            m = _BARE_KEY.match(self.text, self.pos)
            if not m:
                raise self.fail("expected a metadata key, such as lang=en")
            key, self.pos = m.group(), m.end()
        self.skip()
        op = next((o for o in _OPERATORS if self.text.startswith(o, self.pos)), None)
        if op is None:
            raise self.fail(f"expected an operator after {key!r}: use KEY=VALUE (or !=, >, >=, <, <=)")
        self.pos += len(op)
        if self.pos < len(self.text) and self.text[self.pos] in "=<>!":
            raise self.fail(f"{op + self.text[self.pos]!r} is not an operator; use one of = != > >= < <=")
        items = self.values(whole_rest)
        return _cli_condition(key, op, items, self.fail)

    def values(self, whole_rest: bool) -> list[tuple[str, bool]]:
        """(text, was quoted) for each comma-separated value."""
        items: list[tuple[str, bool]] = []
        stop = "," if whole_rest else ",()" + "".join(c for c in " \t\n")
        while True:
            self.skip()
            if self.pos < len(self.text) and self.text[self.pos] in "\"'":
                items.append((self.quoted(), True))
            else:
                start = self.pos
                while self.pos < len(self.text) and self.text[self.pos] not in stop:
                    self.pos += 1
                items.append((self.text[start : self.pos].strip(), False))
            self.skip()
            if self.pos < len(self.text) and self.text[self.pos] == ",":
                self.pos += 1
                continue
            return items


def _scalar(text: str) -> list[Any]:
    """A bare CLI value as every type it can mean: always the string, plus the number, boolean or null it spells."""
    out: list[Any] = [text]
    try:
        parsed = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return out
    if isinstance(parsed, float) and not math.isfinite(parsed):
        return out  # 1e999: the string only
    if isinstance(parsed, int) and not isinstance(parsed, bool) and not _INT64[0] <= parsed <= _INT64[1]:
        return out  # too big to compare as a number in SQLite
    if parsed is None or isinstance(parsed, (bool, int, float)):
        out.append(parsed)
    return out


def _cli_condition(key: str, op: str, items: list[tuple[str, bool]], fail: Any) -> dict[str, Any]:
    if any(not text and not quoted for text, quoted in items):
        if len(items) == 1:
            raise fail(f"no value after {key + op!r}; to match documents that have the key, write {key}=*")
        raise fail("an empty value in a comma-separated list")
    if items == [("*", False)] and op in ("=", "!="):
        return {key: {"$exists": op == "="}}
    if any(text == "*" and not quoted for text, quoted in items):
        raise fail("* stands alone: key=* (has the key) or key!=* (lacks it)")
    if op in ("=", "!="):
        values: list[Any] = []
        for text, quoted in items:
            for v in [text] if quoted else _scalar(text):
                if not any(v == w and type(v) is type(w) for w in values):
                    values.append(v)
        return {key: {_CLI_OP[op]: values}}
    if len(items) != 1:
        raise fail(f"{op} takes one value, not a list")
    text, quoted = items[0]
    bound: Any = text
    if not quoted:
        parsed = _scalar(text)[-1]
        if isinstance(parsed, (int, float)) and not isinstance(parsed, bool):
            bound = parsed
    return {key: {_CLI_OP[op]: bound}}


def parse_filter(text: str) -> dict[str, Any]:
    """One --filter argument as a filter dict (the syntax is `SYNTAX`).

    Without AND / OR / NOT or a leading parenthesis, everything after the operator is the value
    (`title=Pride and Prejudice`); in an expression, quote values that hold spaces."""
    if not isinstance(text, str) or not text.strip():
        raise InputError("an empty --filter; use KEY=VALUE (see --help)")
    _check_text(text, "--filter")
    parser = _Parser(text)
    if _KEYWORD.search(text) or text.lstrip().startswith("("):
        out = parser.parse()
    else:
        out = parser.condition(whole_rest=True)
        if parser.pos < len(text):  # a quoted value followed by more text
            raise parser.fail(f"unexpected {text[parser.pos:]!r} after the value")
    filter_sql(out)  # every value checked before any search runs
    return out


def parse_filters(items: Sequence[str]) -> dict[str, Any] | None:
    """Repeated --filter arguments: all must hold. None when there are none."""
    parsed = [parse_filter(item) for item in items]
    if not parsed:
        return None
    return parsed[0] if len(parsed) == 1 else {"$and": parsed}
