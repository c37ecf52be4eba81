"""PATCH bodies applied to stored objects: the three patch types kubectl sends.

* ``application/merge-patch+json``: RFC 7386 (maps merge, ``null`` deletes, lists replace).
* ``application/strategic-merge-patch+json``: Kubernetes' strategic merge patch, the one
  ``kubectl apply``, ``edit``, ``label`` and ``annotate`` send. Like a merge patch, except
  that lists a :class:`Struct` schema names as :class:`MergeList` merge element by element
  on a key (``spec.volumes`` on ``name``), and the directives ``$patch``
  (``replace``/``delete``/``merge``), ``$retainKeys``, ``$setElementOrder/<list>`` and
  ``$deleteFromPrimitiveList/<list>`` are honoured.
* ``application/json-patch+json``: RFC 6902 operations (``kubectl patch --type=json``).

Every function returns a new object and leaves its arguments alone.

>>> pod = {"spec": {"volumes": [{"name": "a", "emptyDir": {}}, {"name": "b"}]}}
>>> patch = {"spec": {"volumes": [{"name": "a", "emptyDir": {"medium": "Memory"}}]}}
>>> strategic_merge_patch(pod, patch, POD_SCHEMA)["spec"]["volumes"]
[{'name': 'a', 'emptyDir': {'medium': 'Memory'}}, {'name': 'b'}]
>>> merge_patch(pod, patch)["spec"]["volumes"]
[{'name': 'a', 'emptyDir': {'medium': 'Memory'}}]
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "EVENT_SCHEMA",
    "OBJECT_SCHEMA",
    "POD_SCHEMA",
    "MergeList",
    "PatchError",
    "PrimitiveSet",
    "Struct",
    "json_patch",
    "merge_patch",
    "strategic_merge_patch",
]

_DIRECTIVE = "$patch"
_RETAIN_KEYS = "$retainKeys"
_SET_ORDER = "$setElementOrder/"
_DELETE_PRIMITIVES = "$deleteFromPrimitiveList/"


class PatchError(ValueError):
    """A patch that cannot be applied; ``str()`` says why in one line."""


@dataclass(frozen=True)
class MergeList:
    """A list of maps merged element by element, matching elements on ``key``."""

    key: str
    element: Struct | None = None


@dataclass(frozen=True)
class PrimitiveSet:
    """A list of scalars merged as a set (``metadata.finalizers``)."""


@dataclass(frozen=True)
class Struct:
    """The strategic-merge schema of a map: the fields that do not merge the default way.

    A field not named here merges as in a merge patch (maps recurse, lists replace).
    """

    fields: Mapping[str, Struct | MergeList | PrimitiveSet] = field(default_factory=dict)

    def get(self, name: str) -> Struct | MergeList | PrimitiveSet | None:
        return self.fields.get(name)


# -- schemas of the kinds volfs serves (Kubernetes' patchMergeKey/patchStrategy tags) -----

OBJECT_META = Struct({
    "ownerReferences": MergeList("uid"),
    "finalizers": PrimitiveSet(),
})
OBJECT_SCHEMA = Struct({"metadata": OBJECT_META})
"""The schema every kind shares: only ``metadata`` has merging lists."""

_CONTAINER = Struct({
    "ports": MergeList("containerPort"),
    "env": MergeList("name"),
    "volumeMounts": MergeList("mountPath"),
    "volumeDevices": MergeList("devicePath"),
    "resizePolicy": MergeList("resourceName"),
})
POD_SCHEMA = Struct({
    "metadata": OBJECT_META,
    "spec": Struct({
        "volumes": MergeList("name"),
        "initContainers": MergeList("name", _CONTAINER),
        "containers": MergeList("name", _CONTAINER),
        "ephemeralContainers": MergeList("name", _CONTAINER),
        "imagePullSecrets": MergeList("name"),
        "hostAliases": MergeList("ip"),
        "topologySpreadConstraints": MergeList("topologyKey"),
        "schedulingGates": MergeList("name"),
        "resourceClaims": MergeList("name"),
    }),
    "status": Struct({
        "conditions": MergeList("type"),
        "podIPs": MergeList("ip"),
    }),
})
EVENT_SCHEMA = OBJECT_SCHEMA


# -- RFC 7386 --------------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch of ``target`` by ``patch``.

    >>> merge_patch({"a": {"b": 1, "c": 2}, "d": [1]}, {"a": {"b": None}, "d": [2]})
    {'a': {'c': 2}, 'd': [2]}
    """
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# -- strategic merge patch ------------------------------------------------------------------


def strategic_merge_patch(target: dict[str, Any], patch: dict[str, Any],
                          schema: Struct) -> dict[str, Any]:
    """Kubernetes' strategic merge patch of ``target`` by ``patch``, lists per ``schema``.

    Raises:
        PatchError: an unknown ``$patch`` directive, a merge-list element without its
            key, or a malformed directive.
    """
    if not isinstance(patch, dict):
        raise PatchError("a strategic merge patch must be a JSON object")
    return _merge_map(copy.deepcopy(target), patch, schema)


def _merge_map(original: dict[str, Any], patch: dict[str, Any],
               schema: Struct | None) -> dict[str, Any]:
    patch = dict(patch)
    directive = patch.pop(_DIRECTIVE, None)
    if directive == "replace":
        return _clean(patch, schema)
    if directive == "delete":
        return {}
    if directive not in (None, "merge"):
        raise PatchError(f"unknown patch type: {directive!r} in map")
    retain = patch.pop(_RETAIN_KEYS, None)
    if retain is not None:
        if not isinstance(retain, list):
            raise PatchError("$retainKeys must be a list of field names")
        original = {k: v for k, v in original.items() if k in retain}
    orders: dict[str, list[Any]] = {}
    for key in [k for k in patch if k.startswith(_SET_ORDER)]:
        orders[key[len(_SET_ORDER):]] = patch.pop(key)
    for key in [k for k in patch if k.startswith(_DELETE_PRIMITIVES)]:
        name, doomed = key[len(_DELETE_PRIMITIVES):], patch.pop(key)
        if isinstance(original.get(name), list) and isinstance(doomed, list):
            original[name] = [v for v in original[name] if v not in doomed]
    for key, value in patch.items():
        sub = schema.get(key) if schema is not None else None
        if value is None:
            original.pop(key, None)
            continue
        current = original.get(key)
        if isinstance(value, dict):
            sub_struct = sub if isinstance(sub, Struct) else None
            if isinstance(current, dict):
                original[key] = _merge_map(current, value, sub_struct)
            elif value.get(_DIRECTIVE) == "delete":
                original.pop(key, None)
            else:
                original[key] = _merge_map({}, value, sub_struct)
        elif isinstance(value, list):
            original[key] = _merge_list(current if isinstance(current, list) else [], value, sub)
        else:
            original[key] = value
    for name, order in orders.items():
        if isinstance(original.get(name), list) and isinstance(order, list):
            sub = schema.get(name) if schema is not None else None
            original[name] = _reorder(original[name], order, sub)
    return original


def _merge_list(original: list[Any], patch: list[Any],
                schema: Struct | MergeList | PrimitiveSet | None) -> list[Any]:
    if any(isinstance(item, dict) and item.get(_DIRECTIVE) == "replace" for item in patch):
        rest = [item for item in patch
                if not (isinstance(item, dict) and item.get(_DIRECTIVE) == "replace")]
        return _clean(rest, schema)
    if isinstance(schema, PrimitiveSet):
        merged = list(original)
        merged += [v for v in patch if v not in merged]
        return merged
    if not isinstance(schema, MergeList):
        return _clean(patch, schema)
    merged = list(original)
    for item in patch:
        if not isinstance(item, dict):
            raise PatchError(f"list elements merged on {schema.key!r} must be objects")
        if schema.key not in item:
            raise PatchError(f"map: {item} does not contain declared merge key: {schema.key}")
        position = next((i for i, o in enumerate(merged)
                         if isinstance(o, dict) and o.get(schema.key) == item[schema.key]), None)
        if item.get(_DIRECTIVE) == "delete":
            merged = [o for o in merged
                      if not (isinstance(o, dict) and o.get(schema.key) == item[schema.key])]
        elif position is None:
            merged.append(_merge_map({}, item, schema.element))
        else:
            merged[position] = _merge_map(merged[position], item, schema.element)
    return merged


def _reorder(items: list[Any], order: list[Any],
             schema: Struct | MergeList | PrimitiveSet | None) -> list[Any]:
    """Sort ``items`` as ``order`` lists them; items it does not name keep their place after."""
    if isinstance(schema, MergeList):
        keys = [o.get(schema.key) if isinstance(o, dict) else None for o in order]

        def rank(item: Any) -> int:
            key = item.get(schema.key) if isinstance(item, dict) else None
            return keys.index(key) if key in keys else len(keys)
    else:
        def rank(item: Any) -> int:
            return order.index(item) if item in order else len(order)
    return sorted(items, key=rank)


def _clean(value: Any, schema: Struct | MergeList | PrimitiveSet | None) -> Any:
    """``value`` with every directive merged away, as if patched onto nothing."""
    if isinstance(value, dict):
        return _merge_map({}, value, schema if isinstance(schema, Struct) else None)
    if isinstance(value, list):
        element = schema.element if isinstance(schema, MergeList) else None
        return [_clean(item, element) for item in value
                if not (isinstance(item, dict) and item.get(_DIRECTIVE) == "delete")]
    return value


# -- RFC 6902 --------------------------------------------------------------------------------


def json_patch(target: Any, operations: Any) -> Any:
    """RFC 6902 JSON patch: ``add``, ``remove``, ``replace``, ``move``, ``copy``, ``test``.

    >>> json_patch({"a": [1, 2]}, [{"op": "add", "path": "/a/-", "value": 3}])
    {'a': [1, 2, 3]}

    Raises:
        PatchError: a malformed operation, a path that does not exist, a failed test.
    """
    if not isinstance(operations, list):
        raise PatchError("a JSON patch must be a list of operations")
    document = copy.deepcopy(target)
    for index, operation in enumerate(operations):
        if not isinstance(operation, dict) or not isinstance(operation.get("path"), str):
            raise PatchError(f"operation {index}: must be an object with a string 'path'")
        op, path = operation.get("op"), operation["path"]
        if op in ("add", "replace", "test") and "value" not in operation:
            raise PatchError(f"operation {index} ({op} {path}): missing 'value'")
        if op == "add":
            document = _add(document, path, copy.deepcopy(operation["value"]))
        elif op == "remove":
            document, _ = _remove(document, path)
        elif op == "replace":
            document, _ = _remove(document, path)
            document = _add(document, path, copy.deepcopy(operation["value"]))
        elif op in ("move", "copy"):
            source = operation.get("from")
            if not isinstance(source, str):
                raise PatchError(f"operation {index} ({op} {path}): missing 'from'")
            if op == "move":
                document, value = _remove(document, source)
            else:
                value = copy.deepcopy(_get(document, source))
            document = _add(document, path, value)
        elif op == "test":
            if _get(document, path) != operation["value"]:
                raise PatchError(f"testing value {path} failed")
        else:
            raise PatchError(f"operation {index}: unknown op {op!r}")
    return document


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"path {path!r} is not a JSON pointer (it must start with '/')")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _index(container: list[Any], token: str, path: str, *, end_ok: bool) -> int:
    if token == "-" and end_ok:
        return len(container)
    if not token.isdigit() or (len(token) > 1 and token.startswith("0")):
        raise PatchError(f"path {path!r}: {token!r} is not a list index")
    index = int(token)
    if index > len(container) or (index == len(container) and not end_ok):
        raise PatchError(f"path {path!r}: index {index} is out of range")
    return index


def _parent(document: Any, path: str) -> tuple[Any, str]:
    tokens = _pointer(path)
    if not tokens:
        raise PatchError("the whole document cannot be the target of this operation")
    parent = document
    for token in tokens[:-1]:
        parent = _step(parent, token, path)
    return parent, tokens[-1]


def _step(value: Any, token: str, path: str) -> Any:
    if isinstance(value, dict):
        if token not in value:
            raise PatchError(f"path {path!r} does not exist")
        return value[token]
    if isinstance(value, list):
        return value[_index(value, token, path, end_ok=False)]
    raise PatchError(f"path {path!r} does not exist")


def _get(document: Any, path: str) -> Any:
    value = document
    for token in _pointer(path):
        value = _step(value, token, path)
    return value


def _add(document: Any, path: str, value: Any) -> Any:
    if path == "":
        return value
    parent, token = _parent(document, path)
    if isinstance(parent, dict):
        parent[token] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, token, path, end_ok=True), value)
    else:
        raise PatchError(f"path {path!r} does not exist")
    return document


def _remove(document: Any, path: str) -> tuple[Any, Any]:
    parent, token = _parent(document, path)
    if isinstance(parent, dict):
        if token not in parent:
            raise PatchError(f"path {path!r} does not exist")
        return document, parent.pop(token)
    if isinstance(parent, list):
        return document, parent.pop(_index(parent, token, path, end_ok=False))
    raise PatchError(f"path {path!r} does not exist")
