"""MongoDB's rules for filters, projections and sorts, applied to decoded documents (pure).

Values compare within MongoDB's type brackets (numbers with numbers, strings with strings, dates
with dates) and order across them as MongoDB does: null, numbers, strings, objects, arrays,
binary, ObjectId, booleans, dates. A path reaches into sub-documents and through arrays, and a
condition on an array field matches when the array or any element matches.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from bson import ObjectId
from pymongo.errors import OperationFailure

Filter = Mapping[str, Any]
SortSpec = list[tuple[str, int]]

_UTC = dt.UTC


class _Missing:
    """A path that ends before its last field (it matches null, and no $exists: true)."""


MISSING = _Missing()


def lookup(doc: Any, path: str) -> list[Any]:
    """Every value ``path`` (dotted) reaches in ``doc``; empty when it reaches none."""
    return [v for v in reach(doc, path) if v is not MISSING]


def reach(doc: Any, path: str) -> list[Any]:
    """What ``path`` reaches, with ``MISSING`` where it stops short in a document without the
    field; through an array, only its sub-documents are followed (so ``{"a.b": null}`` matches
    neither ``{a: []}`` nor ``{a: [1]}``, as the MongoDB-protocol server answers)."""
    return _walk(doc, path.split("."))


def _walk(value: Any, parts: Sequence[str]) -> list[Any]:
    if not parts:
        return [value]
    head, rest = parts[0], parts[1:]
    if isinstance(value, Mapping):
        return _walk(value[head], rest) if head in value else [MISSING]
    if isinstance(value, list):
        found: list[Any] = []
        if head.isdigit() and int(head) < len(value):
            found += _walk(value[int(head)], rest)
        for element in value:  # elements that are not documents hold no field: they add nothing
            if isinstance(element, Mapping):
                found += _walk(element, parts)
        return found
    return [MISSING]


def type_rank(value: Any) -> int:
    """MongoDB's order of types (null first, dates after booleans)."""
    if value is None:
        return 1
    if isinstance(value, bool):
        return 8
    if isinstance(value, int | float):
        return 2
    if isinstance(value, str):
        return 3
    if isinstance(value, Mapping):
        return 4
    if isinstance(value, list):
        return 5
    if isinstance(value, bytes):
        return 6
    if isinstance(value, ObjectId):
        return 7
    if isinstance(value, dt.datetime):
        return 9
    return 12


def sort_key(value: Any) -> tuple[int, Any]:
    """A key that orders and compares values as MongoDB does."""
    rank = type_rank(value)
    if rank == 1:
        return (1, 0)
    if rank == 4:
        return (4, tuple((k, sort_key(v)) for k, v in value.items()))
    if rank == 5:
        return (5, tuple(sort_key(v) for v in value))
    if rank == 6:
        return (6, (len(value), bytes(value)))
    if rank == 7:
        return (7, value.binary)
    if rank == 8:
        return (8, int(value))
    if rank == 9:
        return (9, as_utc(value))
    if rank == 12:
        raise OperationFailure(f"the local store cannot compare a {type(value).__name__}")
    return (rank, value)


def as_utc(value: dt.datetime) -> dt.datetime:
    """A naive UTC datetime (MongoDB dates have no zone; naive ones are taken as UTC)."""
    if value.tzinfo is None:
        return value
    return value.astimezone(_UTC).replace(tzinfo=None)


def values_equal(a: Any, b: Any) -> bool:
    """MongoDB equality: 1 == 1.0, True != 1, sub-documents equal field by field in order."""
    return sort_key(a) == sort_key(b)


def is_operator_doc(value: Any) -> bool:
    """True for a condition like ``{"$gt": 3}`` (rather than a sub-document to equal)."""
    return isinstance(value, Mapping) and bool(value) and all(str(k).startswith("$") for k in value)


def matches(doc: Mapping[str, Any], query: Filter) -> bool:
    """True when ``doc`` satisfies ``query``."""
    for key, cond in query.items():
        if key == "$and":
            if not all(matches(doc, sub) for sub in cond):
                return False
        elif key == "$or":
            if not any(matches(doc, sub) for sub in cond):
                return False
        elif key == "$nor":
            if any(matches(doc, sub) for sub in cond):
                return False
        elif key == "$comment":
            continue
        elif key.startswith("$"):
            raise OperationFailure(f"the local store does not support the query operator {key}")
        elif not _field_matches(doc, key, cond):
            return False
    return True


def _candidates(doc: Mapping[str, Any], path: str) -> list[Any]:
    found = []
    for value in reach(doc, path):
        found.append(value)
        if isinstance(value, list):
            found.extend(value)
    return found


def _field_matches(doc: Mapping[str, Any], path: str, cond: Any) -> bool:
    if is_operator_doc(cond):
        return all(_operator_matches(doc, path, op, arg) for op, arg in cond.items())
    return _equals_any(doc, path, cond)


def _equals_any(doc: Mapping[str, Any], path: str, value: Any) -> bool:
    candidates = _candidates(doc, path)
    if value is None:  # null matches a null value and a missing field
        return any(c is None or c is MISSING for c in candidates)
    wanted = sort_key(value)
    return any(c is not MISSING and sort_key(c) == wanted for c in candidates)


def _equals_one_of(doc: Mapping[str, Any], path: str, values: Iterable[Any]) -> bool:
    """:func:`_equals_any` for any of ``values`` (``$in``), each value's key computed once."""
    values = list(values)
    candidates = _candidates(doc, path)
    if any(v is None for v in values) and any(c is None or c is MISSING for c in candidates):
        return True
    wanted = {sort_key(v) for v in values if v is not None}
    return any(c is not MISSING and sort_key(c) in wanted for c in candidates)


_COMPARISONS = {
    "$gt": lambda a, b: a > b,
    "$gte": lambda a, b: a >= b,
    "$lt": lambda a, b: a < b,
    "$lte": lambda a, b: a <= b,
}


def _operator_matches(doc: Mapping[str, Any], path: str, op: str, arg: Any) -> bool:
    if op == "$eq":
        return _equals_any(doc, path, arg)
    if op == "$ne":
        return not _equals_any(doc, path, arg)
    if op == "$in":
        return _equals_one_of(doc, path, _sequence(op, arg))
    if op == "$nin":
        return not _equals_one_of(doc, path, _sequence(op, arg))
    if op == "$exists":
        return bool(lookup(doc, path)) == bool(arg)
    if op == "$not":
        return not _field_matches(doc, path, arg)
    if op == "$size":
        return any(isinstance(v, list) and len(v) == arg for v in lookup(doc, path))
    if op == "$all":
        return all(_equals_any(doc, path, value) for value in _sequence(op, arg))
    compare = _COMPARISONS.get(op)
    if compare is None:
        raise OperationFailure(f"the local store does not support the query operator {op}")
    if arg is None:  # $gte/$lte null match null and missing; $gt/$lt null match nothing
        return op in ("$gte", "$lte") and _equals_any(doc, path, None)
    bound = sort_key(arg)
    return any(
        c is not MISSING and type_rank(c) == type_rank(arg) and compare(sort_key(c), bound)
        for c in _candidates(doc, path)
    )


def _sequence(op: str, arg: Any) -> Iterable[Any]:
    if not isinstance(arg, list | tuple | set | frozenset):
        raise OperationFailure(f"{op} needs an array")
    return arg


def project(doc: dict[str, Any], projection: Mapping[str, Any] | None) -> dict[str, Any]:
    """The fields of ``doc`` a projection keeps (inclusion or exclusion, dotted paths)."""
    if not projection:
        return doc
    keep_id = bool(projection.get("_id", 1))
    fields = {k: bool(v) for k, v in projection.items() if k != "_id"}
    if fields and all(fields.values()):
        out: dict[str, Any] = {"_id": doc["_id"]} if keep_id and "_id" in doc else {}
        for path in fields:
            _copy_path(doc, out, path.split("."))
        return out
    if any(fields.values()):
        raise OperationFailure("a projection cannot both include and exclude fields")
    if not fields:  # only _id named
        return {"_id": doc["_id"]} if keep_id and "_id" in doc else _without(doc, ["_id"])
    out = _without(doc, list(fields))
    return out if keep_id else _without(out, ["_id"])


def _copy_path(src: Mapping[str, Any], dst: dict[str, Any], parts: list[str]) -> None:
    head = parts[0]
    if head not in src:
        return
    if len(parts) == 1:
        dst[head] = src[head]
    elif isinstance(src[head], Mapping):
        _copy_path(src[head], dst.setdefault(head, {}), parts[1:])


def _without(doc: Mapping[str, Any], paths: list[str]) -> dict[str, Any]:
    out = dict(doc)
    for path in paths:
        _drop_path(out, path.split("."))
    return out


def _drop_path(doc: dict[str, Any], parts: list[str]) -> None:
    head = parts[0]
    if head not in doc:
        return
    if len(parts) == 1:
        del doc[head]
    elif isinstance(doc[head], Mapping):
        doc[head] = dict(doc[head])  # a copy: the caller's document stays whole
        _drop_path(doc[head], parts[1:])


def normalize_sort(key_or_list: Any, direction: int | None = None) -> SortSpec:
    """pymongo's ``sort`` arguments as ``[(field, 1 | -1), ...]``."""
    if isinstance(key_or_list, str):
        return [(key_or_list, 1 if direction is None else int(direction))]
    if isinstance(key_or_list, Mapping):
        return [(str(k), int(v)) for k, v in key_or_list.items()]
    return [(str(k), int(v)) for k, v in key_or_list]


def sort_documents(docs: list[dict[str, Any]], spec: SortSpec) -> list[dict[str, Any]]:
    """``docs`` in the order of ``spec`` (a stable sort, key by key)."""
    for field, direction in reversed(spec):
        descending = direction < 0
        keys = {id(d): _sort_value(d, field, descending) for d in docs}
        docs.sort(key=lambda d: keys[id(d)], reverse=descending)
    return docs


def _sort_value(doc: Mapping[str, Any], field: str, descending: bool) -> tuple[int, Any]:
    values = lookup(doc, field)
    if not values:
        return sort_key(None)
    value = values[0] if len(values) == 1 else values
    if isinstance(value, list):  # an array sorts by its smallest (largest, descending) element
        if not value:
            return (0, 0)  # an empty array sorts before null and missing
        keys = [sort_key(v) for v in value]
        return max(keys) if descending else min(keys)
    return sort_key(value)
