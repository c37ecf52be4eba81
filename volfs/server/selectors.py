"""Label and field selectors, parsed and matched as the Kubernetes API server does.

Label selectors (``?labelSelector=``, ``kubectl -l``) are requirements joined by
commas, all of which must hold::

    tier=web          tier==web         tier!=web       (!= also matches a missing label)
    tier in (web,db)  tier notin (db)   (notin also matches a missing label)
    tier              !tier             (exists / does not exist)
    replicas>1        replicas<3        (integer values)

Field selectors (``?fieldSelector=``) compare fields by name with ``=``, ``==`` or
``!=``; which fields a kind offers is its descriptor's business (see
``volfs.server.resources``). ``\\,``, ``\\=``, ``\\!`` and ``\\\\`` escape those characters
in a value.

>>> select = parse_label_selector("tier in (web, db), !canary")
>>> select({"tier": "web"}), select({"tier": "web", "canary": "1"}), select({})
(True, False, False)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "FieldRequirement",
    "LabelSelector",
    "SelectorError",
    "field_matcher",
    "parse_field_selector",
    "parse_label_selector",
    "path_getter",
]

_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_KEY = re.compile(rf"^([a-z0-9]([-a-z0-9.]{{0,251}}[a-z0-9])?/)?{_NAME}$")
_VALUE = re.compile(rf"^({_NAME})?$")
_OPERATORS = ("==", "!=", "=", ">", "<")


class SelectorError(ValueError):
    """A selector that does not parse; ``str()`` is the API server's wording."""


@dataclass(frozen=True)
class _Requirement:
    key: str
    operator: str  # "=", "!=", "in", "notin", "exists", "!", ">", "<"
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.operator == "exists":
            return present
        if self.operator == "!":
            return not present
        if self.operator in ("=", "in"):
            return present and value in self.values
        if self.operator in ("!=", "notin"):
            return not present or value not in self.values
        if not present:  # > and <
            return False
        try:
            number = int(value or "")
        except ValueError:
            return False
        bound = int(self.values[0])
        return number > bound if self.operator == ">" else number < bound


class LabelSelector:
    """A parsed label selector: call it with an object's labels."""

    def __init__(self, requirements: list[_Requirement]) -> None:
        self.requirements = requirements

    def __call__(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    def matches_object(self, obj: Mapping[str, Any]) -> bool:
        labels = (obj.get("metadata") or {}).get("labels")
        return self(labels if isinstance(labels, dict) else {})


def parse_label_selector(text: str) -> LabelSelector:
    """Parse ``text``; an empty selector selects everything.

    Raises:
        SelectorError: ``unable to parse requirement: ...`` naming what is wrong.
    """
    requirements = []
    for part in _split_requirements(text):
        if part:
            requirements.append(_parse_requirement(part))
    return LabelSelector(requirements)


def _split_requirements(text: str) -> list[str]:
    """Split on the commas that are not inside ``( ... )``."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise SelectorError(f"unable to parse requirement: unbalanced ')' in {text!r}")
        if char == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    if depth != 0:
        raise SelectorError(f"unable to parse requirement: unbalanced '(' in {text!r}")
    parts.append("".join(current).strip())
    if len(parts) > 1 and any(not p for p in parts):
        raise SelectorError(f"unable to parse requirement: empty requirement in {text!r}")
    return parts


_SET_FORM = re.compile(r"^(?P<key>\S+)\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)$")


def _parse_requirement(part: str) -> _Requirement:
    if part.startswith("!"):
        return _Requirement(_key(part[1:].strip()), "!")
    match = _SET_FORM.match(part)
    if match:
        values = tuple(v.strip() for v in match["values"].split(","))
        if values == ("",):
            raise SelectorError(
                f"unable to parse requirement: {part!r}: for 'in', 'notin' operators, "
                "values set can't be empty")
        return _Requirement(_key(match["key"]), match["op"], tuple(_value(v) for v in values))
    for operator in _OPERATORS:
        key, found, value = part.partition(operator)
        if found:
            key, value = key.strip(), value.strip()
            if operator in (">", "<"):
                if not re.fullmatch(r"-?\d+", value):
                    raise SelectorError(
                        f"unable to parse requirement: {part!r}: for 'Gt', 'Lt' operators, "
                        "the value must be an integer")
                return _Requirement(_key(key), operator, (value,))
            return _Requirement(_key(key), "!=" if operator == "!=" else "=", (_value(value),))
    if re.search(r"\s", part):
        raise SelectorError(f"unable to parse requirement: found {part!r}, expected an operator")
    return _Requirement(_key(part), "exists")


def _key(key: str) -> str:
    if not _KEY.match(key):
        raise SelectorError(
            f'unable to parse requirement: key: Invalid value: "{key}": a label key must be '
            "a qualified name (an optional DNS prefix and '/', then 1-63 alphanumeric "
            "characters, '-', '_' or '.', starting and ending alphanumeric)")
    return key


def _value(value: str) -> str:
    if not _VALUE.match(value):
        raise SelectorError(
            f'unable to parse requirement: values[0]: Invalid value: "{value}": a label value '
            "must be empty or 1-63 alphanumeric characters, '-', '_' or '.', starting and "
            "ending alphanumeric")
    return value


@dataclass(frozen=True)
class FieldRequirement:
    field: str
    operator: str  # "=" or "!="
    value: str


def parse_field_selector(text: str) -> list[FieldRequirement]:
    """Parse ``field=value,field!=value,...``.

    >>> parse_field_selector(r"metadata.name=web,status.phase!=Fail\\,ed")
    ... # doctest: +NORMALIZE_WHITESPACE
    [FieldRequirement(field='metadata.name', operator='=', value='web'),
     FieldRequirement(field='status.phase', operator='!=', value='Fail,ed')]

    Raises:
        SelectorError: ``invalid selector: ...`` for a term without an operator.
    """
    requirements = []
    for term in _split_unescaped(text):
        if not term:
            continue
        parsed = _parse_field_term(term)
        if parsed is None:
            raise SelectorError(f"invalid selector: '{text}'; can't understand '{term}'")
        requirements.append(parsed)
    return requirements


def _split_unescaped(text: str) -> list[str]:
    terms: list[str] = []
    current: list[str] = []
    escaped = False
    for char in text:
        if escaped:
            current.append("\\" + char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ",":
            terms.append("".join(current))
            current = []
        else:
            current.append(char)
    if escaped:
        current.append("\\")
    terms.append("".join(current))
    return terms


def _parse_field_term(term: str) -> FieldRequirement | None:
    # The operator is the first unescaped "!=", "==" or "=".
    i = 0
    while i < len(term):
        char = term[i]
        if char == "\\":
            i += 2
            continue
        for operator in ("!=", "==", "="):
            if term.startswith(operator, i):
                field, value = term[:i].strip(), term[i + len(operator):]
                return FieldRequirement(field, "!=" if operator == "!=" else "=",
                                        _unescape(value))
        i += 1
    return None


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value)


FieldGetter = Callable[[Mapping[str, Any]], Any]


def field_matcher(
    requirements: list[FieldRequirement], fields: Mapping[str, FieldGetter]
) -> Callable[[Mapping[str, Any]], bool]:
    """A predicate over objects for ``requirements``, reading fields with ``fields``.

    A value that is missing or None compares as ``""``; booleans as ``true``/``false``.

    Raises:
        SelectorError: ``field label not supported: <field>`` for a field not in ``fields``.
    """
    checks = []
    for requirement in requirements:
        getter = fields.get(requirement.field)
        if getter is None:
            raise SelectorError(f'field label not supported: {requirement.field}')
        checks.append((getter, requirement))

    def matches(obj: Mapping[str, Any]) -> bool:
        for getter, requirement in checks:
            equal = _as_text(getter(obj)) == requirement.value
            if equal != (requirement.operator == "="):
                return False
        return True

    return matches


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def path_getter(path: str) -> FieldGetter:
    """A getter for a dotted path (``"involvedObject.name"``) into an object."""
    parts = path.split(".")

    def get(obj: Mapping[str, Any]) -> Any:
        value: Any = obj
        for part in parts:
            if not isinstance(value, Mapping):
                return None
            value = value.get(part)
        return value

    return get
