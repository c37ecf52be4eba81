"""Errors the lifecycle layer raises; the server maps each to a Kubernetes Status."""

from __future__ import annotations


class LifecycleError(Exception):
    """Base class: a request the lifecycle layer refused. ``str()`` is one line."""


class NotFound(LifecycleError):
    def __init__(self, kind: str, namespace: str | None, name: str) -> None:
        self.kind, self.namespace, self.name = kind, namespace, name
        super().__init__(f'{kind.lower()}s "{name}" not found')


class AlreadyExists(LifecycleError):
    def __init__(self, kind: str, namespace: str | None, name: str) -> None:
        self.kind, self.namespace, self.name = kind, namespace, name
        super().__init__(f'{kind.lower()}s "{name}" already exists')


class Invalid(LifecycleError):
    """The object is well-formed YAML/JSON but not acceptable (HTTP 422).

    ``causes`` lists ``(field, message)`` pairs, the field in Kubernetes'
    dotted notation (``spec.volumes[1].emptyDir.sizeLimit``).
    """

    def __init__(self, kind: str, name: str, causes: list[tuple[str, str]]) -> None:
        self.kind, self.name, self.causes = kind, name, causes
        field, message = causes[0]
        super().__init__(f"{field}: {message}")


class SetupFailed(LifecycleError):
    """Setting a pod's volumes up failed (a hook, the disk); nothing was left behind."""


class Conflict(LifecycleError):
    """The request clashes with the current state (HTTP 409, reason Conflict)."""

    def __init__(self, kind: str, name: str, message: str) -> None:
        self.kind, self.name = kind, name
        super().__init__(message)


class VolumeNotReady(LifecycleError):
    """A volume that cannot be set up *yet* (its claim is not bound): the pod waits, Pending.

    ``str()`` is one line saying what it waits for.
    """
