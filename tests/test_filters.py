"""The safe filter language: validation, MongoDB rendering, and in-memory evaluation that agrees
with MongoDB (a property test against the real test mongod)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pymongo
import pytest
from bson import ObjectId
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymongo.collection import Collection

from realtime_app.data.filters import DEFAULT_MAX_COST, INT64_MAX, INT64_MIN, MAX_LIST_ITEMS, Filter, FilterCache
from realtime_app.data.resources import Resources
from realtime_app.errors import BadFilter

FIELDS = ("a", "b")
ALLOWED = {*FIELDS, "id"}
IDS = sorted(ObjectId() for _ in range(6))
OUTSIDE_IDS = [ObjectId("0" * 24), ObjectId("f" * 24)]

DOCS = [
    {"id": str(IDS[0]), "a": 1, "b": "x"},
    {"id": str(IDS[1]), "a": 2.5, "b": None},
    {"id": str(IDS[2]), "a": True},
    {"id": str(IDS[3]), "a": "2", "b": "y"},
    {"id": str(IDS[4])},
    {"id": str(IDS[5]), "a": None, "b": ""},
]


def matching(spec: Any) -> list[int]:
    query = Filter(spec, ALLOWED)
    return [index for index, doc in enumerate(DOCS) if query.matches(doc)]


def test_each_operator_in_memory() -> None:
    cases: list[tuple[Any, list[int]]] = [
        (None, [0, 1, 2, 3, 4, 5]),
        ({}, [0, 1, 2, 3, 4, 5]),
        ({"a": 1}, [0]),
        ({"a": 1.0}, [0]),
        ({"a": True}, [2]),
        ({"a": None}, [4, 5]),
        ({"a": {"$eq": "2"}}, [3]),
        ({"a": {"$ne": 1}}, [1, 2, 3, 4, 5]),
        ({"a": {"$ne": None}}, [0, 1, 2, 3]),
        ({"a": {"$gt": 1}}, [1]),
        ({"a": {"$gte": 1}}, [0, 1]),
        ({"a": {"$lt": 2.5}}, [0]),
        ({"a": {"$lte": 2.5}}, [0, 1]),
        ({"a": {"$gt": ""}}, [3]),
        ({"a": {"$in": [1, "2", None]}}, [0, 3, 4, 5]),
        ({"a": {"$nin": [1, "2"]}}, [1, 2, 4, 5]),
        ({"a": {"$in": []}}, []),
        ({"a": {"$exists": True}}, [0, 1, 2, 3, 5]),
        ({"a": {"$exists": False}}, [4]),
        ({"a": {"$not": {"$gt": 1}}}, [0, 2, 3, 4, 5]),
        ({"a": {"$not": {"$not": {"$eq": 1}}}}, [0]),
        ({"a": {"$gte": 1, "$lt": 2}}, [0]),
        ({"$and": [{"a": {"$exists": True}}, {"b": {"$exists": True}}]}, [0, 1, 3, 5]),
        ({"$or": [{"a": 1}, {"b": "y"}]}, [0, 3]),
        ({"a": 1, "b": "y"}, []),
        ({"id": str(IDS[2])}, [2]),
        ({"id": str(IDS[2]).upper()}, [2]),
        ({"id": {"$gt": str(IDS[3]).upper()}}, [4, 5]),
        ({"id": {"$in": [str(IDS[0]), str(OUTSIDE_IDS[0])]}}, [0]),
        ({"id": None}, []),
    ]
    for spec, expected in cases:
        assert matching(spec) == expected, spec


def test_rendering_for_mongodb() -> None:
    oid = IDS[0]
    assert Filter(None, ALLOWED).mongo == {}
    assert Filter({"a": 1, "b": {"$in": ["x", None]}}, ALLOWED).mongo == {"a": 1, "b": {"$in": ["x", None]}}
    assert Filter({"id": str(oid).upper()}, ALLOWED).mongo == {"_id": oid}
    assert Filter({"id": {"$not": {"$in": [str(oid)]}}}, ALLOWED).mongo == {"_id": {"$not": {"$in": [oid]}}}
    assert Filter({"$or": [{"id": {"$gte": str(oid)}}, {"a": {"$exists": False}}]}, ALLOWED).mongo == {
        "$or": [{"_id": {"$gte": oid}}, {"a": {"$exists": False}}]}
    assert Filter({"id": {"$exists": True}}, ALLOWED).mongo == {"_id": {"$exists": True}}


@pytest.mark.parametrize("spec", [
    {"$where": "true"}, {"$expr": {"$eq": ["$a", 1]}}, {"$text": {"$search": "x"}}, {"$nor": [{"a": 1}]}, {"$comment": "x"},
    {"a": {"$regex": "x"}}, {"a": {"$elemMatch": {"$eq": 1}}}, {"a": {"$size": 1}}, {"a": {"$type": "string"}}, {"a": {"$mod": [2, 0]}},
    {"a": {"$all": [1]}}, {"a": {"$not": {"$regex": "x"}}}, {"$and": [{"$where": "1"}]}, {"$or": [{"a": {"$where": "1"}}]},
    {"a": {"$eq": {"$gt": 1}}}, {"a": {"$in": [{"$gt": 1}]}}, {"a": {"$in": "x"}}, {"a": [1, 2]}, {"a": {"b": 1}},
    {"a": {}}, {"a": {"$exists": 1}}, {"a": {"$not": 1}}, {"a": {"$not": {}}}, {"a": {"$gt": None}}, {"a": {"$lte": False}},
    {"$and": []}, {"$or": {"a": 1}}, {"$and": [1]}, {"c": 1}, {"a.b": 1}, {"_id": "x"}, {"id": "xyz"}, {"id": 5}, {"id": {"$in": ["x"]}},
    {"a": "x" * 4097}, {"a": 2**63}, {"a": -(2**63) - 1}, {"a": float("nan")}, {"a": float("inf")}, {"a": {"$in": list(range(MAX_LIST_ITEMS + 1))}},
    [{"a": 1}], "a", 1,
])
def test_rejected(spec: Any) -> None:
    with pytest.raises(BadFilter):
        Filter(spec, ALLOWED)


def test_filter_cache_shares_filters_that_select_alike() -> None:
    cache = FilterCache(max_filters=4)
    first = cache.get("c", {"a": 1, "b": {"$gt": 2}}, ALLOWED, 8)
    assert cache.get("c", {"b": {"$gt": 2}, "a": 1}, ALLOWED, 8) is first
    assert first.matches({"a": 1, "b": 3}) and not first.matches({"a": 1, "b": 2})
    assert cache.get("other", {"a": 1, "b": {"$gt": 2}}, ALLOWED, 8) is not first
    assert cache.get("c", {"a": 1, "b": {"$gt": 2}}, ALLOWED, 3) is not first
    for _ in range(2):  # a refused filter is refused every time, never cached as something else
        with pytest.raises(BadFilter, match="cannot filter on 'z'"):
            cache.get("c", {"z": 1}, ALLOWED, 8)


def test_limits() -> None:
    nested: Any = {"a": 1}
    for _ in range(3):
        nested = {"$and": [nested]}
    Filter(nested, ALLOWED, max_depth=5)
    with pytest.raises(BadFilter, match="deeper"):
        Filter({"$and": [nested]}, ALLOWED, max_depth=5)
    Filter({"a": {"$in": list(range(MAX_LIST_ITEMS))}}, ALLOWED)
    Filter({"a": INT64_MAX, "b": INT64_MIN}, ALLOWED)
    Filter({"a": "x" * 4096}, ALLOWED)
    with pytest.raises(BadFilter, match="costs more than 1000"):
        Filter({"$and": [{"$or": [{"a": i} for i in range(DEFAULT_MAX_COST // 3)]}] * 2}, ALLOWED)


def test_listed_values_count_toward_the_cost() -> None:
    """The abusive shape: few conditions, thousands of listed values (59 KB of JSON)."""
    assert Filter({"a": {"$in": ["x", "y", None]}}, ALLOWED).cost == 6  # the query, the field, $in, three values
    abusive = {"$or": [{"a": {"$in": [""] * MAX_LIST_ITEMS}}] * 39 + [{"b": 1}]}
    with pytest.raises(BadFilter, match="costs more than"):
        Filter(abusive, ALLOWED)
    with pytest.raises(BadFilter, match="costs more than 100 "):
        Filter({"a": {"$in": list(range(100))}}, ALLOWED, max_cost=100)


def test_membership_is_by_comparison_class() -> None:
    listed = Filter({"a": {"$in": [1, "2", True, None]}}, ALLOWED)
    assert [listed.matches(doc) for doc in ({"a": 1.0}, {"a": 2}, {"a": "2"}, {"a": True}, {"a": [1]}, {"a": {"k": 1}}, {}, {"a": None})] == [
        True, False, True, True, False, False, True, True]
    unlisted = Filter({"a": {"$nin": [1, "x"]}}, ALLOWED)
    assert [unlisted.matches(doc) for doc in ({"a": 1}, {"a": "x"}, {"a": True}, {})] == [False, False, True, True]


def test_filter_cache_is_bounded_in_bytes() -> None:
    cache = FilterCache(max_filters=1000, max_bytes=20 * 1000 * 400)
    heavy = [cache.get("c", {"a": {"$in": list(range(n, n + 490))}}, ALLOWED, 8) for n in range(100)]
    assert cache.bytes <= cache.max_bytes and len(cache) < 100
    assert cache.get("c", {"a": {"$in": list(range(99, 99 + 490))}}, ALLOWED, 8) is heavy[-1]  # the newest stay


def test_filterable_fields_are_the_scalar_ones() -> None:
    resources = Resources.from_dict({"collections": [{"name": "things", "schema": {"type": "object", "properties": {
        "name": {"type": "string"}, "count": {"type": ["integer", "null"]}, "state": {"enum": ["on", "off", None]},
        "kind": {"const": "x"}, "tags": {"type": "array"}, "meta": {"type": "object"}, "anything": {},
        "either": {"type": ["string", "array"]}, "shapes": {"enum": [[1], "x"]},
    }}}]})
    assert resources.get("things").filterable == {"name", "count", "state", "kind", "id", "tenant", "version"}


# -- property: in memory and in MongoDB, one meaning ---------------------------------------

SMALL_VALUES: list[Any] = [None, True, False, 0, 1, -1, 2, 1.0, 1.5, -0.0, 2**53, 2**53 + 1, float(2**53), INT64_MAX, INT64_MIN,
                           float(2**63), "", "a", "b", "ab", "B", "é", "\u00ff", "\U0001f600", "a\x00"]
scalars = st.one_of(
    st.sampled_from(SMALL_VALUES),
    st.integers(INT64_MIN, INT64_MAX),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=3),
)
ordered_scalars = scalars.filter(lambda v: v is not None and not isinstance(v, bool))
id_values = st.sampled_from(IDS + OUTSIDE_IDS).flatmap(lambda oid: st.sampled_from([str(oid), str(oid).upper()]))


def conditions(values: st.SearchStrategy[Any], ordered: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    operator = st.one_of(
        st.tuples(st.sampled_from(["$eq", "$ne"]), values),
        st.tuples(st.sampled_from(["$gt", "$gte", "$lt", "$lte"]), ordered),
        st.tuples(st.sampled_from(["$in", "$nin"]), st.lists(values, max_size=3)),
        st.tuples(st.just("$exists"), st.booleans()),
    )
    operators = st.lists(operator, min_size=1, max_size=2).map(dict)
    return st.one_of(values, operators, operators.map(lambda ops: {"$not": ops}))


field_queries = st.one_of(
    st.builds(lambda field, condition: {field: condition}, st.sampled_from(FIELDS), conditions(scalars, ordered_scalars)),
    st.builds(lambda condition: {"id": condition}, conditions(st.one_of(st.none(), id_values), id_values)),
)
queries = st.recursive(
    field_queries,
    lambda children: st.one_of(
        st.lists(children, min_size=1, max_size=3).map(lambda items: {"$and": items}),
        st.lists(children, min_size=1, max_size=3).map(lambda items: {"$or": items}),
        st.lists(field_queries, min_size=2, max_size=3).map(lambda items: {k: v for item in items for k, v in item.items()}),
    ),
    max_leaves=6,
)
documents = st.lists(
    st.fixed_dictionaries({}, optional={field: scalars for field in FIELDS}), max_size=len(IDS),
)


@pytest.fixture(scope="module")
def scratch(mongo_uri: str) -> Iterator[Collection[Any]]:
    with pymongo.MongoClient(mongo_uri) as client:
        name = f"test_filters_{uuid.uuid4().hex[:12]}"
        yield client[name]["docs"]
        client.drop_database(name)


@settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(docs=documents, spec=queries)
def test_memory_and_mongodb_agree(scratch: Collection[Any], docs: list[dict[str, Any]], spec: Any) -> None:
    query = Filter(spec, ALLOWED)
    stored = [{"_id": oid, **fields} for oid, fields in zip(IDS, docs, strict=False)]
    scratch.delete_many({})
    if stored:
        scratch.insert_many(stored)
    in_mongodb = {str(raw["_id"]) for raw in scratch.find(query.mongo, {"_id": 1})}
    in_memory = {str(raw["_id"]) for raw in stored if query.matches({"id": str(raw["_id"]), **{k: v for k, v in raw.items() if k != "_id"}})}
    assert in_memory == in_mongodb, (spec, stored)
