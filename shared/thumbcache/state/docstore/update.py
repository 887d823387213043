"""MongoDB's update operators applied to a decoded document (pure).

Implemented: ``$set``, ``$unset``, ``$inc``, ``$min``, ``$max``, ``$setOnInsert``,
``$addToSet`` and ``$push`` (each with ``$each``), and whole-document replacement. Anything else
raises ``WriteError``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pymongo.errors import WriteError

from thumbcache.state.docstore.query import is_operator_doc, sort_key, values_equal


def is_update_document(update: Mapping[str, Any]) -> bool:
    """True for operators (``{"$set": ...}``), False for a replacement document."""
    keys = [str(k) for k in update]
    if keys and all(k.startswith("$") for k in keys):
        return True
    if any(k.startswith("$") for k in keys):
        raise WriteError("an update mixes operators and fields")
    return False


def apply_update(
    doc: dict[str, Any], update: Mapping[str, Any], *, inserting: bool = False
) -> dict[str, Any]:
    """``doc`` (changed in place and returned) after the operators of ``update``."""
    for op, fields in update.items():
        if op == "$setOnInsert" and not inserting:
            continue
        apply = _OPERATORS.get(op)
        if apply is None:
            raise WriteError(f"the local store does not support the update operator {op}")
        for path, value in fields.items():
            apply(doc, path, value)
    return doc


def replace_document(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """A replacement keeps the ``_id`` of the document it replaces."""
    if "_id" in new and "_id" in old and not values_equal(new["_id"], old["_id"]):
        raise WriteError("a replacement cannot change _id")
    out = {"_id": old["_id"]} if "_id" in old else {}
    out.update({k: v for k, v in new.items() if k != "_id"})
    return out


def upsert_seed(query: Mapping[str, Any]) -> dict[str, Any]:
    """The document an upsert starts from: the filter's equality conditions."""
    doc: dict[str, Any] = {}
    for key, cond in query.items():
        if key == "$and":
            for sub in cond:
                doc.update(upsert_seed(sub))
        elif key.startswith("$"):
            continue
        elif is_operator_doc(cond):
            if "$eq" in cond:
                set_path(doc, key, cond["$eq"])
        else:
            set_path(doc, key, cond)
    return doc


def set_path(doc: dict[str, Any], path: str, value: Any) -> None:
    """Set a dotted path, creating sub-documents on the way."""
    parts = path.split(".")
    parent = _parent(doc, parts, create=True)
    assert parent is not None
    _assign(parent, parts[-1], value)


def _unset(doc: dict[str, Any], path: str, _value: Any) -> None:
    parts = path.split(".")
    parent = _parent(doc, parts, create=False)
    if isinstance(parent, dict):
        parent.pop(parts[-1], None)
    elif isinstance(parent, list) and parts[-1].isdigit() and int(parts[-1]) < len(parent):
        parent[int(parts[-1])] = None


def _get(doc: dict[str, Any], path: str) -> tuple[bool, Any]:
    parts = path.split(".")
    parent = _parent(doc, parts, create=False)
    last = parts[-1]
    if isinstance(parent, dict) and last in parent:
        return True, parent[last]
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        return True, parent[int(last)]
    return False, None


def _parent(doc: dict[str, Any], parts: list[str], *, create: bool) -> Any:
    node: Any = doc
    for part in parts[:-1]:
        if isinstance(node, dict):
            if part not in node:
                if not create:
                    return None
                node[part] = {}
            child = node[part]
        elif isinstance(node, list) and part.isdigit():
            index = int(part)
            if index >= len(node):
                if not create:
                    return None
                node.extend([None] * (index + 1 - len(node)))
                node[index] = {}
            child = node[index]
        else:
            return _cannot_create(part, node, create)
        if not isinstance(child, dict | list):
            return _cannot_create(part, child, create)
        node = child
    return node


def _cannot_create(part: str, node: Any, create: bool) -> None:
    if create:
        raise WriteError(f"cannot create field {part!r} in element {node!r}")


def _assign(parent: Any, key: str, value: Any) -> None:
    if isinstance(parent, dict):
        parent[key] = value
    elif isinstance(parent, list) and key.isdigit():
        index = int(key)
        if index >= len(parent):
            parent.extend([None] * (index + 1 - len(parent)))
        parent[index] = value
    else:
        raise WriteError(f"cannot set field {key!r} in {parent!r}")


def _inc(doc: dict[str, Any], path: str, amount: Any) -> None:
    if not _is_number(amount):
        raise WriteError(f"$inc needs a number for {path!r}")
    found, current = _get(doc, path)
    if not found:
        set_path(doc, path, amount)
    elif _is_number(current):
        set_path(doc, path, current + amount)
    else:
        raise WriteError(f"cannot apply $inc to {path!r}: it is not a number")


def _min(doc: dict[str, Any], path: str, value: Any) -> None:
    found, current = _get(doc, path)
    if not found or sort_key(value) < sort_key(current):
        set_path(doc, path, value)


def _max(doc: dict[str, Any], path: str, value: Any) -> None:
    found, current = _get(doc, path)
    if not found or sort_key(value) > sort_key(current):
        set_path(doc, path, value)


def _array_at(doc: dict[str, Any], path: str, op: str) -> list[Any]:
    found, current = _get(doc, path)
    if not found:
        current = []
        set_path(doc, path, current)
    if not isinstance(current, list):
        raise WriteError(f"cannot apply {op} to {path!r}: it is not an array")
    return current


def _each(value: Any) -> list[Any]:
    if isinstance(value, Mapping) and "$each" in value:
        if set(value) != {"$each"}:
            raise WriteError("the local store supports only $each as a modifier")
        return list(value["$each"])
    return [value]


def _add_to_set(doc: dict[str, Any], path: str, value: Any) -> None:
    array = _array_at(doc, path, "$addToSet")
    for item in _each(value):
        if not any(values_equal(item, present) for present in array):
            array.append(item)


def _push(doc: dict[str, Any], path: str, value: Any) -> None:
    _array_at(doc, path, "$push").extend(_each(value))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_OPERATORS = {
    "$set": set_path,
    "$setOnInsert": set_path,
    "$unset": _unset,
    "$inc": _inc,
    "$min": _min,
    "$max": _max,
    "$addToSet": _add_to_set,
    "$push": _push,
}
