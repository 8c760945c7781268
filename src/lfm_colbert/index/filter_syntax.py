"""The command-line syntax of metadata filters: `--filter 'lang=en AND year>=2020'` as a filter dict.

The structure it produces, and the checks every value goes through, are lfm_colbert.index.filters'.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Sequence

from lfm_colbert.errors import InputError
from lfm_colbert.index.filters import INT64, check_text, filter_sql

__all__ = ["SYNTAX", "parse_filter", "parse_filters"]

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
    if isinstance(parsed, int) and not isinstance(parsed, bool) and not INT64[0] <= parsed <= INT64[1]:
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
    check_text(text, "--filter")
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
