"""The errors of volfs's API, as Kubernetes' apimachinery has them.

:class:`ManifestError`: everything wrong with one manifest, each cause tied to a field.
:class:`RequestError` and its kinds (NotFound, AlreadyExists, Invalid, Conflict, ...):
a request refused by a lower layer (controllers, lifecycle); the server turns each
into a Kubernetes Status. They live here, at the bottom, so that every layer can
raise them without importing a layer above it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["AlreadyExists", "Cause", "Conflict", "Invalid", "ManifestError", "NoSpace",
           "NotFound", "RequestError", "SetupFailed", "VolumeNotReady", "field_path",
           "one_line", "quote"]

Cause = tuple[str, str]
"""``(field, message)``; field in Kubernetes' dotted notation, ``""`` for the whole document."""

_MAX_QUOTED = 80


class ManifestError(ValueError):
    """A manifest that cannot be turned into objects: bad YAML, unknown kind, invalid fields.

    Attributes:
        source: where the manifest came from (``"pods.yaml (document 2)"``), or None.
        causes: every ``(field, message)`` found, in document order where possible.

    ``str(err)`` is one line about the first cause: ``"{source}: {field}: {message}"``,
    leaving out ``source:`` when it is None and ``field:`` when it is ``""``.
    """

    def __init__(self, source: str | None, causes: Iterable[Cause]) -> None:
        self.source = source
        # A field or message may hold what the document held (a key, a value): kept on
        # one line, whatever it was.
        self.causes: list[Cause] = [(one_line(f), one_line(m)) for f, m in causes]
        if not self.causes:
            raise ValueError("a ManifestError needs at least one cause")
        super().__init__(self.line(0))

    def __str__(self) -> str:
        return self.line(0)

    def __reduce__(self) -> tuple[Any, tuple[str | None, list[Cause]]]:
        return (type(self), (self.source, self.causes))

    def line(self, index: int) -> str:
        """One line for ``causes[index]``, formatted as ``str(err)`` formats the first."""
        field, message = self.causes[index]
        parts = [p for p in (self.source, field) if p]
        return ": ".join([*parts, message])

    def lines(self) -> list[str]:
        """One line per cause, for a CLI that shows them all."""
        return [self.line(i) for i in range(len(self.causes))]

    def with_source(self, source: str | None) -> ManifestError:
        """The same causes, reported against another source."""
        return ManifestError(source, self.causes)

    def map_fields(self, rename: Callable[[str], str]) -> ManifestError:
        """The same error with every field path passed through ``rename``."""
        return ManifestError(self.source, [(rename(f), m) for f, m in self.causes])


_LINE_BREAKERS = {c: json.dumps(chr(c))[1:-1] for c in [*range(0x20), 0x7F, 0x85, 0x2028, 0x2029]}


def one_line(text: str) -> str:
    """``text`` with control characters and line separators escaped (``\\n``, ``\\u0000``)."""
    return text.translate(_LINE_BREAKERS)


def quote(value: object) -> str:
    """Show a value in a message the way Kubernetes does: strings quoted, numbers bare.

    Anything but printable ASCII is escaped (``"\u2010"``, ``"\t"``), so that a character
    that looks like another (a Unicode hyphen, a non-breaking space) shows as what it is.
    Long values are cut (``"aaaa..."``) to keep the message on one short line.
    """
    if isinstance(value, str) and len(value) > _MAX_QUOTED:
        value = value[:_MAX_QUOTED] + "..."
    try:
        text = json.dumps(value, ensure_ascii=True, default=str)
    except (TypeError, ValueError):
        text = json.dumps(str(value), ensure_ascii=True)
    if len(text) > _MAX_QUOTED + 5:
        text = text[:_MAX_QUOTED] + "..."
    return text


def field_path(parts: Iterable[str | int]) -> str:
    """Join path parts the Kubernetes way: ``("spec", "volumes", 1, "name")`` ->
    ``spec.volumes[1].name``."""
    path = ""
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
    return path

class RequestError(Exception):
    """Base class: a request volfs refused (a layer below the server raised it; the server
    answers it with a Kubernetes Status). ``str()`` is one line."""


class NotFound(RequestError):
    def __init__(self, kind: str, namespace: str | None, name: str) -> None:
        self.kind, self.namespace, self.name = kind, namespace, name
        super().__init__(f'{kind.lower()}s "{name}" not found')


class AlreadyExists(RequestError):
    def __init__(self, kind: str, namespace: str | None, name: str) -> None:
        self.kind, self.namespace, self.name = kind, namespace, name
        super().__init__(f'{kind.lower()}s "{name}" already exists')


class Invalid(RequestError):
    """The object is well-formed YAML/JSON but not acceptable (HTTP 422).

    ``causes`` lists ``(field, message)`` pairs, the field in Kubernetes'
    dotted notation (``spec.volumes[1].emptyDir.sizeLimit``).
    """

    def __init__(self, kind: str, name: str, causes: list[tuple[str, str]]) -> None:
        self.kind, self.name, self.causes = kind, name, causes
        field, message = causes[0]
        super().__init__(f"{field}: {message}")


class SetupFailed(RequestError):
    """Setting a pod's volumes up failed (a hook, the disk); nothing was left behind."""


class NoSpace(RequestError):
    """The state database could not store a change: its filesystem is full (HTTP 507).
    The change was rolled back whole; the daemon serves on, and stores again once
    there is room."""


class Conflict(RequestError):
    """The request clashes with the current state (HTTP 409, reason Conflict)."""

    def __init__(self, kind: str, name: str, message: str) -> None:
        self.kind, self.name = kind, name
        super().__init__(message)


class VolumeNotReady(RequestError):
    """A volume that cannot be set up *yet* (its claim is not bound): the pod waits, Pending.

    ``str()`` is one line saying what it waits for.
    """
