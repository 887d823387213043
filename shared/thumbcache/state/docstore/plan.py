"""Which rows SQLite reads for a filter, and in which order (pure).

``_id`` and indexed fields live in SQL columns as :func:`column_value` encodes them: strings as
TEXT, numbers as INTEGER or REAL, ObjectIds, booleans and dates as BLOBs whose first byte keeps
MongoDB's order of types, so SQLite orders and compares them as MongoDB does. A plan only ever
narrows to a superset of the matching documents: every row read is still checked against the
filter (:func:`thumbcache.state.docstore.query.matches`), all but the ``_id`` equalities the
SQL condition applied exactly (an ``_id`` is one value, never an array, and its key is unique).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import bson
from bson import ObjectId

from thumbcache.state.docstore.query import SortSpec, as_utc, is_operator_doc

_EPOCH = dt.datetime(1970, 1, 1)
_INT64 = 2**63
_NOT_INDEXABLE = object()


def column_value(value: Any) -> Any:
    """The SQL value of an indexable value (None for null), or ``NOT_INDEXABLE``."""
    if value is None:
        return None
    if isinstance(value, bool):
        return b"\x08" + bytes([int(value)])
    if isinstance(value, int):
        return value if -_INT64 <= value < _INT64 else _NOT_INDEXABLE
    if isinstance(value, float):
        return _NOT_INDEXABLE if math.isnan(value) else value  # NaN has no order here
    if isinstance(value, str):
        return value
    if isinstance(value, ObjectId):
        return b"\x07" + value.binary
    if isinstance(value, dt.datetime):
        millis = (as_utc(value) - _EPOCH) // dt.timedelta(milliseconds=1)
        return b"\x09" + (millis + _INT64).to_bytes(8, "big")
    return _NOT_INDEXABLE


def indexable(value: Any) -> bool:
    """True when ``value`` has an SQL encoding that keeps MongoDB's order."""
    return column_value(value) is not _NOT_INDEXABLE


def id_key(value: Any) -> Any:
    """The primary-key value of an ``_id`` (any BSON value but an array)."""
    key = column_value(value)
    if key is None or key is _NOT_INDEXABLE:
        return b"\x03" + bson.encode({"": value})  # sub-documents and the rest: unique bytes
    return key


@dataclass(frozen=True)
class Plan:
    """An SQL condition and order for a filter: rows to read, then check."""

    where: str
    params: tuple[Any, ...]
    order: str
    ordered: bool  # rows come out in the order the sort asks for
    checked: frozenset[str] = frozenset()  # fields the SQL condition applied whole and exactly


_SQL_OPS = {"$eq": "=", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}


def plan(query: Mapping[str, Any], sort: SortSpec, columns: Mapping[str, str]) -> Plan:
    """Narrow ``query`` by the SQL ``columns`` (field path -> column name) it names."""
    clauses: list[str] = []
    params: list[Any] = []
    checked: set[str] = set()
    for field, cond in query.items():
        column = columns.get(field)
        if column is None:
            continue
        conditions = cond.items() if is_operator_doc(cond) else [("$eq", cond)]
        exact = field == "_id"  # equalities on the primary key are exact; ranges cross types
        for op, arg in conditions:
            if op in _SQL_OPS and _usable(arg):
                clauses.append(f'"{column}" {_SQL_OPS[op]} ?')
                params.append(column_value(arg))
                exact = exact and op == "$eq"
            elif op == "$in" and isinstance(arg, list | tuple) and all(_usable(a) for a in arg):
                if not arg:
                    clauses.append("0")
                    continue
                clauses.append(f'"{column}" IN ({", ".join("?" * len(arg))})')
                params.extend(column_value(a) for a in arg)
            else:
                exact = False
        if exact:
            checked.add(field)
    order, ordered = _order(sort, columns)
    return Plan(" AND ".join(clauses) or "1", tuple(params), order, ordered, frozenset(checked))


def _usable(value: Any) -> bool:
    return value is not None and indexable(value)


def _order(sort: SortSpec, columns: Mapping[str, str]) -> tuple[str, bool]:
    if not sort:
        return "", True
    if not all(field in columns for field, _ in sort):
        return "", False
    terms = [
        f'"{columns[field]}" {"DESC" if direction < 0 else "ASC"}' for field, direction in sort
    ]
    return "ORDER BY " + ", ".join(terms), True
