"""The filter language: every form in the Python dict, in `Field` expressions and in the --filter syntax,
run against a real index's catalog; and its errors."""

from __future__ import annotations

import numpy as np
import pytest

from lfm_colbert.errors import InputError
from lfm_colbert.index import Index
from lfm_colbert.index.filter_syntax import parse_filter, parse_filters
from lfm_colbert.index.filters import Field, Filter, filter_keys, filter_sql

MODEL = {"model_id": "vectors-only", "variant": "none", "dim": 8, "fingerprint": "test"}
META = {
    "a": {"lang": "en", "year": 2019, "date": "2019-12-31", "tags": ["bird", "cold"], "draft": True},
    "b": {"lang": "de", "year": 2020, "date": "2020-06-01", "tags": ["bird"], "title": "Vögel"},
    "c": {"lang": "fr", "year": 2021.5, "date": "2021-01-15", "tags": [], "title": None},
    "d": {"lang": "en", "year": "2022", "tags": "bird", "n": 1},
    "e": {"lang": ["en", "es"], "year": 2024, "tags": ["fish", 7], "n": True, "Publication Year": 1999},
}


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    idx = Index(tmp_path_factory.mktemp("filters") / "idx", MODEL)
    rng = np.random.default_rng(0)
    idx.add_vectors([rng.standard_normal((3, 8)).astype(np.float32) for _ in META], ids=list(META), metadata=list(META.values()))
    return idx


def ids(index, f):
    return {d.id for d in index.list(filter=f)}


@pytest.mark.parametrize(
    "f, want",
    [
        ({"lang": "en"}, "ade"),  # e: a list-valued key matches when any element does
        ({"lang": ["de", "fr"]}, "bc"),
        ({"lang": {"$in": ["de", "fr"]}}, "bc"),
        ({"lang": {"$eq": "de"}}, "b"),
        ({"lang": {"$ne": "en"}}, "bc"),
        ({"lang": {"$nin": ["en", "de"]}}, "c"),
        ({"title": {"$ne": "Vögel"}}, "acde"),  # documents without the key match a negation
        ({"year": {"$gte": 2020}}, "bce"),  # numbers compare with numbers: "2022" (text) is not one
        ({"year": {"$gte": 2020, "$lt": 2024}}, "bc"),
        ({"year": {"$gt": 2021}}, "ce"),
        ({"year": {"$gte": "2021"}}, "d"),  # a string bound compares with strings
        ({"date": {"$gte": "2020-01-01", "$lte": "2021-01-15"}}, "bc"),
        ({"date": {"$lt": "2020"}}, "a"),
        ({"title": {"$exists": True}}, "bc"),  # null is a value: c has the key
        ({"title": {"$exists": False}}, "ade"),
        ({"tags": "bird", "lang": "en"}, "ad"),
        ({"$or": [{"lang": "fr"}, {"year": {"$lt": 2020}}]}, "ac"),
        ({"$and": [{"tags": "bird"}, {"tags": "cold"}]}, "a"),
        ({"$not": {"tags": "bird"}}, "ce"),
        ({"tags": 7}, "e"),
        ({"n": 1}, "d"),  # typed: true is not 1
        ({"n": True}, "e"),
        ({"draft": True}, "a"),
        ({"title": None}, "c"),
        ({"year": 2020.0}, "b"),
        ({"Publication Year": {"$lt": 2000}}, "e"),
        ({"missing": {"$exists": False}}, "abcde"),
    ],
)
def test_dict_forms(index, f, want):
    assert ids(index, f) == set(want)


def test_field_expressions_build_the_same_filters(index):
    assert ids(index, (Field("year") >= 2020) & (Field("year") < 2024)) == {"b", "c"}
    assert ids(index, (Field("lang") == "fr") | (Field("year") < 2020)) == {"a", "c"}
    assert ids(index, ~Field("tags").isin(["bird", 7])) == {"c"}
    assert ids(index, Field("lang").notin(["en", "de"])) == {"c"}
    assert ids(index, Field("title").exists() & (Field("title") != "Vögel")) == {"c"}
    f = (Field("lang") == "en") & Field("year").exists(False)
    assert isinstance(f, Filter) and f.to_dict() == {"$and": [{"lang": {"$eq": "en"}}, {"year": {"$exists": False}}]}
    assert dict(Field("lang") == "en") == {"lang": {"$eq": "en"}}
    # a search takes one too
    q = np.ones((2, 8), np.float32)
    assert {h.id for h in index.search_vectors(q, k=5, filter=Field("lang") == "de")} == {"b"}


@pytest.mark.parametrize(
    "text, want",
    [
        ("lang=en", "ade"),
        ("lang = en", "ade"),
        ("lang=de,fr", "bc"),
        ("lang!=en", "bc"),
        ("lang!=en,de", "c"),
        ("year>=2020", "bce"),  # a number: numeric comparison
        ("year=2022", "d"),  # a bare number also matches the string "2022"
        ("year='2022'", "d"),
        ("year=2019", "a"),
        ("date<2020-01-01", "a"),  # not a number: text comparison
        ("date>=2020-01-01", "bc"),
        ("title=*", "bc"),
        ("title!=*", "ade"),
        ("title=Vögel", "b"),
        ("draft=true", "a"),
        ("lang=en OR lang=fr", "acde"),
        ("lang=en AND year<2020", "a"),
        ("(lang=de OR lang=fr) AND NOT year>2021", "b"),
        ("NOT tags=bird", "ce"),
        ("tags=bird AND tags=cold", "a"),
        ('"Publication Year"<2000', "e"),
        ("year>=2020 AND year<2024", "bc"),
    ],
)
def test_cli_syntax(index, text, want):
    assert ids(index, parse_filter(text)) == set(want)


def test_repeated_filters_all_must_hold(index):
    assert ids(index, parse_filters(["tags=bird", "tags=cold"])) == {"a"}
    assert ids(index, parse_filters(["lang=en", "lang=de"])) == set()  # documented: AND, not OR
    assert parse_filters([]) is None


def test_values_with_spaces_and_commas():
    assert parse_filter("title=Pride and Prejudice") == {"title": {"$in": ["Pride and Prejudice"]}}
    assert parse_filter('title="a, b"') == {"title": {"$in": ["a, b"]}}
    assert parse_filter('title="War and Peace" OR title=Emma') == {
        "$or": [{"title": {"$in": ["War and Peace"]}}, {"title": {"$in": ["Emma"]}}]}
    assert parse_filter("n=1") == {"n": {"$in": ["1", 1]}}
    assert parse_filter("x=null") == {"x": {"$in": ["null", None]}}
    assert parse_filter("year<2020.5") == {"year": {"$lt": 2020.5}}


@pytest.mark.parametrize(
    "text, message",
    [
        ("lang==en", "'==' is not an operator"),
        ("lang=>en", "'=>' is not an operator"),
        ("lang=", "no value after 'lang='"),
        ("lang", "expected an operator"),
        ("=en", "expected a metadata key"),
        ("", "an empty --filter"),
        ("lang=en,", "an empty value"),
        ("year>=2020,2021", "takes one value"),
        ("(lang=en", "not closed"),
        ("lang=en AND", "expected a metadata key"),
        ("title=War and Peace OR x=1", "unexpected"),
        ('title="open', "quote is not closed"),
        ("lang=en*", None),  # a literal '*' inside a value is fine
        ("n=99999999999999999999", None),  # too big for a number: matched as the string only
        ("tags=*,bird", "stands alone"),
        ("lang=\ud800", "lone surrogate"),
    ],
)
def test_cli_syntax_errors(text, message):
    if message is None:
        parse_filter(text)
        return
    with pytest.raises(InputError, match=message):
        parse_filter(text)


@pytest.mark.parametrize(
    "f, message",
    [
        ({}, "non-empty mapping"),
        ([("lang", "en")], "non-empty mapping"),
        ({"bad key!": 1}, "bad filter key"),
        ({"la\"ng": 1}, "bad filter key"),
        ({"lang": []}, "empty list"),
        ({"lang": {"$regex": "e.*"}}, "unknown operator"),
        ({"lang": {}}, "empty mapping"),
        ({"year": {"$gte": [1, 2]}}, "takes one number or string"),
        ({"year": {"$gte": True}}, "takes one number or string"),
        ({"year": {"$eq": [1, 2]}}, "use \\$in"),
        ({"title": {"$exists": "yes"}}, "true or false"),
        ({"$or": []}, "non-empty list"),
        ({"$and": {"lang": "en"}}, "non-empty list"),
        ({"lang": {"x": 1}}, "unknown operator"),
        ({"lang": object()}, "not object"),
        ({"lang": "\udcff"}, "lone surrogate"),
        ({"n": 2**63}, "64-bit"),
        ({"n": -(2**63) - 1}, "64-bit"),
        ({"n": float("nan")}, "not a finite"),
        ({"n": {"$lt": float("inf")}}, "not a finite"),
    ],
)
def test_bad_filters_are_input_errors(f, message):
    with pytest.raises(InputError, match=message):
        filter_sql(f)


def test_edge_integers_and_numpy_scalars(index):
    assert ids(index, {"year": {"$lt": 2**63 - 1}}) == {"a", "b", "c", "e"}
    assert ids(index, {"year": np.int64(2020)}) == {"b"}


def test_filter_keys():
    assert filter_keys(parse_filter("(a=1 OR b=2) AND NOT c=*")) == {"a", "b", "c"}
