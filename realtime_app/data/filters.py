"""The one safe filter language, for REST lists and live queries alike.

A filter is a MongoDB-style query limited to $eq $ne $gt $gte $lt $lte $in $nin $exists $and
$or $not over declared fields plus id, tenant and version. `Filter` validates it once, then
renders it as a MongoDB query (`to_mongo`) and evaluates it in memory (`matches`) with the
same meaning, so a live query and a list with one filter always agree. Anything else is a
BadFilter before it can reach the database.
"""

from __future__ import annotations

import functools
import json
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from bson import ObjectId
from bson.errors import InvalidId

from realtime_app.errors import BadFilter

COMPARISONS = {"$eq", "$ne", "$gt", "$gte", "$lt", "$lte"}
FIELD_OPERATORS = COMPARISONS | {"$in", "$nin", "$exists", "$not"}
LOGICAL_OPERATORS = {"$and", "$or"}
MAX_LIST_ITEMS = 500
MAX_STRING_LENGTH = 4096
# A filter's cost is its conditions plus the values it lists: what compiling it, keeping it and
# evaluating it against every change grows with. The default bound for a single filter.
DEFAULT_MAX_COST = 1000
# Memory a compiled filter takes per unit of cost (measured with tracemalloc: about 360 bytes
# per condition), for the cache's byte budget.
BYTES_PER_COST = 400
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

Scalar = str | int | float | bool | None
Predicate = Callable[[dict[str, Any]], bool]


def _kind(value: Any) -> str:
    """MongoDB's comparison classes for the values a filter may hold."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "other"


def _equal(left: Any, right: Any) -> bool:
    if right is None:
        return left is None
    return _kind(left) == _kind(right) and left == right


def _ordered(op: str, left: Any, right: Any) -> bool:
    if _kind(left) != _kind(right):
        return False
    if op == "$gt":
        return bool(left > right)
    if op == "$gte":
        return bool(left >= right)
    if op == "$lt":
        return bool(left < right)
    return bool(left <= right)


class Filter:
    """A validated filter; build with `Filter(spec, allowed_fields)`. `cost` says what it weighs
    (conditions plus listed values); past ``max_cost`` it is refused."""

    def __init__(self, spec: Any, allowed_fields: Iterable[str], max_depth: int = 8, max_cost: int = DEFAULT_MAX_COST):
        self._allowed = set(allowed_fields)
        self._max_depth = max_depth
        self._max_cost = max_cost
        self.cost = 0
        if spec is None:
            spec = {}
        self.spec = spec
        self._predicate = self._compile_query(spec, depth=1)
        self._mongo = self._render_query(spec)

    @property
    def mongo(self) -> dict[str, Any]:
        return self._mongo

    @functools.cached_property
    def canonical(self) -> str:
        """The spec as compact JSON with sorted keys: equal for filters that select alike."""
        return canonical_json(self.spec)

    def matches(self, doc: dict[str, Any]) -> bool:
        """Evaluate against a document in API form (string `id`)."""
        return self._predicate(doc)

    # -- validation and compilation to a predicate ------------------------------------------

    @property
    def weight(self) -> int:
        """Approximate bytes the compiled filter holds."""
        return self.cost * BYTES_PER_COST + len(self.canonical)

    def _count(self, depth: int, cost: int = 1) -> None:
        self.cost += cost
        if depth > self._max_depth:
            raise BadFilter(f"filter is nested deeper than {self._max_depth} levels")
        if self.cost > self._max_cost:
            raise BadFilter(f"filter costs more than {self._max_cost} (each condition and each listed value counts one); simplify it")

    def _compile_query(self, spec: Any, depth: int) -> Predicate:
        self._count(depth)
        if not isinstance(spec, dict):
            raise BadFilter("a filter is a JSON object")
        parts: list[Predicate] = []
        for key, value in spec.items():
            if key in LOGICAL_OPERATORS:
                if not isinstance(value, list) or not value:
                    raise BadFilter(f"{key} takes a non-empty list of filters")
                if len(value) > MAX_LIST_ITEMS:
                    raise BadFilter(f"{key} takes at most {MAX_LIST_ITEMS} filters")
                subs = [self._compile_query(item, depth + 1) for item in value]
                parts.append(_all(subs) if key == "$and" else _any(subs))
            elif key.startswith("$"):
                raise BadFilter(f"operator {key[:40]!r} is not allowed here; allowed: $and, $or, or a field name")
            else:
                parts.append(self._compile_field(key, value, depth + 1))
        return _all(parts)

    def _compile_field(self, field: str, condition: Any, depth: int) -> Predicate:
        self._count(depth)
        if field not in self._allowed:
            raise BadFilter(f"cannot filter on {field[:80]!r}; filterable fields: {', '.join(sorted(self._allowed))}")
        if isinstance(condition, dict):
            if not condition:
                raise BadFilter(f"empty condition for {field!r}")
            tests = [self._compile_operator(field, op, arg, depth + 1) for op, arg in condition.items()]
            test = _all_values(tests)
        else:
            value = self._scalar(field, condition)
            test = lambda present, v: present and _equal(v, value) if value is not None else (not present or v is None)  # noqa: E731
        return lambda doc: test(field in doc, doc.get(field))

    def _compile_operator(self, field: str, op: str, arg: Any, depth: int) -> Callable[[bool, Any], bool]:
        self._count(depth)
        if op not in FIELD_OPERATORS:
            raise BadFilter(f"operator {op[:40]!r} is not allowed; allowed: {', '.join(sorted(FIELD_OPERATORS | LOGICAL_OPERATORS))}")
        if op == "$exists":
            if not isinstance(arg, bool):
                raise BadFilter(f"$exists on {field!r} takes true or false")
            return lambda present, v: present == arg
        if op == "$not":
            if not isinstance(arg, dict) or not arg:
                raise BadFilter(f"$not on {field!r} takes an operator object, e.g. {{\"$eq\": 1}}")
            inner = _all_values([self._compile_operator(field, o, a, depth + 1) for o, a in arg.items()])
            return lambda present, v: not inner(present, v)
        if op in ("$in", "$nin"):
            if not isinstance(arg, list) or len(arg) > MAX_LIST_ITEMS:
                raise BadFilter(f"{op} on {field!r} takes a list of at most {MAX_LIST_ITEMS} values")
            self._count(depth, len(arg))
            listed = _membership([self._scalar(field, item) for item in arg])
            if op == "$in":
                return listed
            return lambda present, v: not listed(present, v)
        value = self._scalar(field, arg)
        if op == "$eq":
            return self._equality(value)
        if op == "$ne":
            eq = self._equality(value)
            return lambda present, v: not eq(present, v)
        if value is None or isinstance(value, bool):
            raise BadFilter(f"{op} on {field!r} takes a number or a string")
        return lambda present, v: present and _ordered(op, v, value)

    @staticmethod
    def _equality(value: Scalar) -> Callable[[bool, Any], bool]:
        if value is None:
            return lambda present, v: not present or v is None
        return lambda present, v: present and _equal(v, value)

    def _scalar(self, field: str, value: Any) -> Scalar:
        if isinstance(value, (dict, list)):
            raise BadFilter(f"value for {field!r} must be a string, number, boolean or null")
        if isinstance(value, str) and len(value) > MAX_STRING_LENGTH:
            raise BadFilter(f"value for {field!r} is longer than {MAX_STRING_LENGTH} characters")
        if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
            raise BadFilter(f"value for {field!r} is not a finite number")
        if isinstance(value, int) and not isinstance(value, bool) and not INT64_MIN <= value <= INT64_MAX:
            raise BadFilter(f"value for {field!r} is outside the 64-bit integer range")
        if field == "id" and value is not None:
            if not (isinstance(value, str) and ObjectId.is_valid(value)):
                raise BadFilter(f"id values are 24 hexadecimal characters, got {str(value)[:40]!r}")
            return value.lower()  # documents carry lower-case ids; MongoDB compares ObjectIds, whatever the case
        return value

    # -- rendering as a MongoDB query ----------------------------------------------------------

    def _render_query(self, spec: dict[str, Any]) -> dict[str, Any]:
        rendered: dict[str, Any] = {}
        for key, value in spec.items():
            if key in LOGICAL_OPERATORS:
                rendered[key] = [self._render_query(item) for item in value]
            else:
                name = "_id" if key == "id" else key
                rendered[name] = self._render_condition(key, value)
        return rendered

    def _render_condition(self, field: str, condition: Any) -> Any:
        if isinstance(condition, dict):
            return {op: self._render_condition(field, arg) if op == "$not" else self._render_value(field, arg) for op, arg in condition.items()}
        return self._render_value(field, condition)

    @staticmethod
    def _render_value(field: str, value: Any) -> Any:
        if field != "id":
            return value
        if isinstance(value, list):
            return [ObjectId(v) if v is not None else None for v in value]
        try:
            return ObjectId(value) if isinstance(value, str) else value
        except InvalidId:
            raise BadFilter("malformed id") from None


def _membership(values: list[Scalar]) -> Callable[[bool, Any], bool]:
    """Whether a field's value is one of ``values``, in constant time: values are looked up by
    their comparison class and value, so 1 and 1.0 match each other but not true or "1"."""
    keys = frozenset((_kind(value), value) for value in values if value is not None)
    null_listed = None in values

    def member(present: bool, v: Any) -> bool:
        if not present or v is None:
            return null_listed
        kind = _kind(v)
        return kind != "other" and (kind, v) in keys

    return member


def _all(predicates: list[Predicate]) -> Predicate:
    if len(predicates) == 1:
        return predicates[0]
    return lambda doc: all(p(doc) for p in predicates)


def _any(predicates: list[Predicate]) -> Predicate:
    return lambda doc: any(p(doc) for p in predicates)


def _all_values(tests: list[Callable[[bool, Any], bool]]) -> Callable[[bool, Any], bool]:
    if len(tests) == 1:
        return tests[0]
    return lambda present, v: all(t(present, v) for t in tests)


def canonical_json(spec: Any) -> str:
    return json.dumps(spec, sort_keys=True, separators=(",", ":"))


class FilterCache:
    """Compiled filters by collection and canonical spec, so that live queries alike (thousands
    of dashboards watching one view) share one filter instead of each compiling its own.

    Least recently used filters go first once the cache holds ``max_filters`` or weighs more
    than ``max_bytes`` (`Filter.weight`), so filters of sockets long closed cannot pile up."""

    def __init__(self, max_filters: int = 1024, max_bytes: int = 32 * 1024 * 1024):
        self.max_filters = max_filters
        self.max_bytes = max_bytes
        self.bytes = 0
        self._filters: OrderedDict[tuple[Any, ...], Filter] = OrderedDict()

    def __len__(self) -> int:
        return len(self._filters)

    def get(self, collection: str, spec: Any, allowed_fields: Iterable[str], max_depth: int,
            max_cost: int = DEFAULT_MAX_COST) -> Filter:
        """``spec`` as parsed from JSON (None for no filter)."""
        fields = frozenset(allowed_fields)
        key = (collection, canonical_json(spec), max_depth, max_cost, fields)
        found = self._filters.get(key)
        if found is not None:
            self._filters.move_to_end(key)
            return found
        compiled = Filter(spec, fields, max_depth, max_cost)
        self._filters[key] = compiled
        self.bytes += compiled.weight
        while len(self._filters) > self.max_filters or (self.bytes > self.max_bytes and len(self._filters) > 1):
            _, evicted = self._filters.popitem(last=False)
            self.bytes -= evicted.weight
        return compiled
