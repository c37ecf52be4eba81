"""Manifests in, typed objects out: YAML streams and decoded documents.

Each document is dispatched on ``(apiVersion, kind)`` through :data:`PARSERS`; a new
kind is one parser function and one line there.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Hashable
from typing import Any

import yaml

from volfs.api.errors import Cause, ManifestError, quote
from volfs.api.legacy import parse_replication_controller
from volfs.api.models import Pod
from volfs.api.storage import (
    PersistentVolume,
    PersistentVolumeClaim,
    StorageClass,
    build_claim,
    build_storage_class,
    build_volume,
)
from volfs.api.validation import build_pod
from volfs.api.workloads import Workload, build_replication_controller, build_stateful_set

__all__ = ["MAX_DEPTH", "NOT_SUPPORTED_YET", "PARSERS", "ApiObject", "Parser", "TooDeep",
           "check_depth", "decode_json", "decode_yaml", "load_manifests", "parse_object",
           "parse_pod"]

ApiObject = Pod | PersistentVolume | PersistentVolumeClaim | StorageClass | Workload
"""Every kind volfs serves."""

Parser = Callable[[dict[str, Any], str | None], list[ApiObject]]
"""Turns one decoded document of its kind into objects, or raises ManifestError."""

MAX_DEPTH = 100
"""How deeply mappings and lists may nest in one document (as Kubernetes' own decoders
cap it): a Kubernetes object needs a dozen levels; thousands would exhaust the stack of
every recursive walk over the object (validation, JSON encoding) and crash the caller."""

NOT_SUPPORTED_YET: frozenset[tuple[str, str]] = frozenset()
"""Kinds volfs will accept; until their parser is in PARSERS they are refused as such."""


def load_manifests(text: str, source: str) -> list[ApiObject]:
    """Parse a YAML stream of one or more documents (``---``) into validated Pods.

    Empty documents are skipped. Nothing is returned unless every document is valid.

    Args:
        text: the YAML text.
        source: what to call it in errors, usually the file name (``"pods.yaml"``);
            when the stream has several documents, errors name the one at fault
            (``"pods.yaml (document 2)"``, counting from 1).

    Raises:
        ManifestError: for malformed YAML (``pod.yaml: line 3, column 5: mapping values
            are not allowed here``) or the first invalid document.
    """
    documents = _load_yaml(text, source)
    objects: list[ApiObject] = []
    for number, doc in enumerate(documents, start=1):
        if doc is None:
            continue
        where = f"{source} (document {number})" if len(documents) > 1 else source
        objects.extend(parse_object(doc, where))
    return objects


class TooDeep(ValueError):
    """A document whose mappings and lists nest deeper than :data:`MAX_DEPTH` (or a YAML
    one that contains itself through an alias). ``str()`` is one line, and says where
    when the parser knew: ``line 3, column 120: nested more than 100 levels deep``."""

    def __init__(self, where: str = "", problem: str = "") -> None:
        problem = problem or (f"nested more than {MAX_DEPTH} levels deep "
                              f"(mappings and lists; at most {MAX_DEPTH})")
        super().__init__(f"{where}: {problem}" if where else problem)


def check_depth(value: Any) -> None:
    """Refuse a decoded document nesting deeper than :data:`MAX_DEPTH`, without recursion.

    What YAML's aliases share is measured once (a document of aliases to aliases is
    measured in linear time), and one that contains itself is refused.

    Raises:
        TooDeep: the document nests too deeply, or contains itself.
    """
    heights: dict[int, int] = {}  # id of a finished mapping or list -> levels below it
    path: set[int] = set()  # ids of those on the way down to the one in hand
    stack: list[tuple[Any, bool]] = [(value, False)]
    while stack:
        node, finished = stack.pop()
        if not isinstance(node, (dict, list)) or (not finished and id(node) in heights):
            continue
        children = [c for c in (node.values() if isinstance(node, dict) else node)
                    if isinstance(c, (dict, list))]
        if finished:
            path.discard(id(node))
            height = 1 + max((heights[id(c)] for c in children), default=0)
            if height > MAX_DEPTH:
                raise TooDeep()
            heights[id(node)] = height
            continue
        if any(id(c) in path or c is node for c in children):
            raise TooDeep(problem="the document contains itself (an alias to an enclosing "
                                  "anchor)")
        path.add(id(node))
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in heights)


def decode_json(raw: bytes | str) -> Any:
    """One JSON document, refused if it nests deeper than :data:`MAX_DEPTH`.

    Raises:
        TooDeep: nested too deeply.
        json.JSONDecodeError, UnicodeDecodeError: not JSON.
    """
    try:
        value = json.loads(raw, parse_constant=_not_json)
    except RecursionError:  # the C decoder's own guard, far past MAX_DEPTH
        raise TooDeep() from None
    check_depth(value)
    return value


def _not_json(constant: str) -> Any:
    """NaN and Infinity are Python's, not JSON's: refused as the API server refuses them."""
    raise ValueError(f"{constant} is not a JSON value")


def decode_yaml(raw: bytes | str) -> Any:
    """One YAML document (as ``yaml.safe_load``), refused if it nests deeper than
    :data:`MAX_DEPTH`: the parser stops at the level past it.

    Raises:
        TooDeep: nested too deeply, or contains itself.
        yaml.YAMLError: not YAML.
    """
    value = yaml.load(raw, Loader=_ShallowLoader)  # noqa: S506 (a SafeLoader)
    check_depth(value)
    return value


def parse_pod(doc: Any, source: str | None = None) -> Pod:
    """Exactly one Pod from one decoded document (a request body, a stored object).

    Raises:
        ManifestError: as :func:`parse_object`, or when the document is not one Pod.
    """
    parsed = parse_object(doc, source)
    if len(parsed) != 1 or not isinstance(parsed[0], Pod):
        raise ManifestError(source, [("kind", "expected one Pod")])
    return parsed[0]


def parse_object(doc: Any, source: str | None = None) -> list[ApiObject]:
    """Parse one decoded document (from YAML or a JSON body) into validated Pods.

    A Pod gives one; a ``v1 List`` gives those of its items; a legacy v1beta1
    ReplicationController gives the v1 controller it describes.

    Raises:
        ManifestError: a document that is not a mapping, lacks ``apiVersion`` or
            ``kind``, is of an unknown kind, or is invalid.
    """
    if not isinstance(doc, dict):
        raise ManifestError(
            source, [("", f"must be a mapping (a Kubernetes object), not {_a(doc)}")]
        )
    causes = [c for c in (_type_field(doc, "apiVersion"), _type_field(doc, "kind")) if c]
    if causes:
        raise ManifestError(source, causes)
    parser = PARSERS.get((doc["apiVersion"], doc["kind"]))
    if parser is None:
        raise ManifestError(source, [_unknown_kind(doc["apiVersion"], doc["kind"])])
    return parser(doc, source)


def _parse_pod(doc: dict[str, Any], source: str | None) -> list[ApiObject]:
    return [build_pod(doc, source)]


def _parse_volume(doc: dict[str, Any], source: str | None) -> list[ApiObject]:
    return [build_volume(doc, source)]


def _parse_claim(doc: dict[str, Any], source: str | None) -> list[ApiObject]:
    return [build_claim(doc, source)]


def _parse_class(doc: dict[str, Any], source: str | None) -> list[ApiObject]:
    return [build_storage_class(doc, source)]


def _parse_legacy(doc: dict[str, Any], source: str | None) -> list[ApiObject]:
    return [parse_replication_controller(doc, source)]


def _parse_controller(doc: dict[str, Any], source: str | None) -> list[ApiObject]:
    return [build_replication_controller(doc, source)]


def _parse_stateful_set(doc: dict[str, Any], source: str | None) -> list[ApiObject]:
    return [build_stateful_set(doc, source)]


def _parse_list(doc: dict[str, Any], source: str | None) -> list[ApiObject]:
    """A ``v1 List`` (what ``kubectl get -o yaml`` writes): the objects of its items."""
    unknown = [(k, f'unknown field "{k}"') for k in doc if k not in _LIST_FIELDS]
    items = doc.get("items")
    if items is not None and not isinstance(items, list):
        unknown.append(("items", f"Invalid value: {quote(items)}: must be a list"))
    if unknown:
        raise ManifestError(source, unknown)
    objects: list[ApiObject] = []
    for i, item in enumerate(items or []):
        try:
            objects.extend(parse_object(item, source))
        except ManifestError as err:
            raise err.map_fields(functools.partial(_under, f"items[{i}]")) from None
    return objects


def _under(prefix: str, field: str) -> str:
    """``spec.x`` under ``items[0]`` is ``items[0].spec.x``; the whole item is ``items[0]``."""
    return f"{prefix}.{field}" if field else prefix


_LIST_FIELDS = frozenset({"apiVersion", "kind", "metadata", "items"})

PARSERS: dict[tuple[str, str], Parser] = {
    ("v1", "Pod"): _parse_pod,
    ("v1", "PersistentVolume"): _parse_volume,
    ("v1", "PersistentVolumeClaim"): _parse_claim,
    ("storage.k8s.io/v1", "StorageClass"): _parse_class,
    ("v1", "List"): _parse_list,
    ("v1beta1", "ReplicationController"): _parse_legacy,
    ("v1", "ReplicationController"): _parse_controller,
    ("apps/v1", "StatefulSet"): _parse_stateful_set,
}
"""``(apiVersion, kind)`` -> parser. Register a new kind here."""


def _type_field(doc: dict[str, Any], key: str) -> Cause | None:
    value = doc.get(key)
    if value is None or value == "":
        return key, "Required value"
    if not isinstance(value, str):
        return key, f"Invalid value: {quote(value)}: must be a string"
    return None


def _unknown_kind(api_version: str, kind: str) -> Cause:
    if (api_version, kind) in NOT_SUPPORTED_YET:
        return "kind", f"{kind} is not supported yet"
    # Quoted as values are: escaped (a newline stays on the line) and cut when long.
    if any(k == kind for _, k in PARSERS):
        return "apiVersion", f"unknown apiVersion {quote(api_version)} for kind {quote(kind)}"
    return "kind", f"unknown kind {quote(kind)} for apiVersion {quote(api_version)}"


def _a(value: Any) -> str:
    """``a list``, ``a string``: what a document is, for an error message."""
    names = {list: "a list", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return names.get(type(value), f"a {type(value).__name__}")


class _ShallowLoader(yaml.SafeLoader):
    """yaml.SafeLoader that stops at a mapping or list nested deeper than MAX_DEPTH,
    before the composer's recursion goes any further (thousands of levels would
    exhaust Python's stack)."""

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        opens = self.check_event(yaml.MappingStartEvent, yaml.SequenceStartEvent)
        if opens:
            if self._depth >= MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise TooDeep(f"line {mark.line + 1}, column {mark.column + 1}")
            self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            if opens:
                self._depth -= 1


class _StrictLoader(_ShallowLoader):
    """_ShallowLoader that refuses a key given twice in one mapping, as Kubernetes does."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        first_lines: dict[Hashable, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):
                continue  # the base class reports it
            if key in first_lines:
                problem = f"mapping key {quote(key)} already defined at line {first_lines[key]}"
                raise yaml.constructor.ConstructorError(None, None, problem, key_node.start_mark)
            first_lines[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def _load_yaml(text: str, source: str) -> list[Any]:
    """Every document of the stream (None for an empty one), or ManifestError."""
    try:
        documents = list(yaml.load_all(text, Loader=_StrictLoader))  # noqa: S506 (a SafeLoader)
        for document in documents:
            check_depth(document)
    except yaml.YAMLError as exc:
        raise ManifestError(source, [("", _yaml_message(exc))]) from None
    except TooDeep as exc:
        raise ManifestError(source, [("", str(exc))]) from None
    return documents


def _yaml_message(exc: yaml.YAMLError) -> str:
    """``line 3, column 5: mapping values are not allowed here`` (1-based, one line)."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        message = f"line {mark.line + 1}, column {mark.column + 1}: {exc.problem}"
        if exc.context and exc.context_mark is not None:
            at = exc.context_mark
            message += f" ({exc.context} at line {at.line + 1}, column {at.column + 1})"
        return message
    return " ".join(str(exc).split())
