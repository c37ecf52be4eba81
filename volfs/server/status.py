"""Kubernetes ``Status`` objects: how the control API says no.

Every refusal the API makes is one of these, shaped as the Kubernetes API server
shapes them, so ``kubectl`` and the volfs CLI read them the same way::

    {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
     "message": "pods \\"web\\" not found", "reason": "NotFound",
     "details": {"name": "web", "kind": "pods"}, "code": 404}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from volfs.api import ManifestError
from volfs.lifecycle.errors import AlreadyExists, Invalid, NotFound, SetupFailed

# The HTTP code Kubernetes uses for each reason.
_CODES = {
    "BadRequest": 400,
    "NotFound": 404,
    "MethodNotAllowed": 405,
    "AlreadyExists": 409,
    "RequestEntityTooLarge": 413,
    "UnsupportedMediaType": 415,
    "Invalid": 422,
    "InternalError": 500,
}


class StatusError(Exception):
    """Raised inside a handler to answer with ``status`` (a Status dict)."""

    def __init__(self, status: dict[str, Any]) -> None:
        super().__init__(status["message"])
        self.status = status


def status(
    reason: str,
    message: str,
    *,
    code: int | None = None,
    name: str | None = None,
    kind: str | None = None,
    causes: Sequence[tuple[str, str]] = (),
) -> dict[str, Any]:
    """A failure Status. ``code`` defaults to the one Kubernetes uses for ``reason``."""
    details: dict[str, Any] = {}
    if name is not None:
        details["name"] = name
    if kind is not None:
        details["kind"] = kind
    if causes:
        details["causes"] = [
            {"reason": "FieldValueInvalid", "message": cause_message, "field": field}
            for field, cause_message in causes
        ]
    result: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code if code is not None else _CODES.get(reason, 500),
    }
    if details:
        result["details"] = details
    return result


def bad_request(message: str) -> dict[str, Any]:
    return status("BadRequest", message)


def invalid(kind: str, name: str | None, causes: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """422 Invalid, worded as the API server words it.

    >>> invalid("Pod", "web", [("spec.volumes[0].name", "Required value")])["message"]
    'Pod "web" is invalid: spec.volumes[0].name: Required value'
    """
    parts = [f"{field}: {message}" if field else message for field, message in causes]
    what = f'{kind} "{name}"' if name else kind
    joined = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    return status(
        "Invalid",
        f"{what} is invalid: {joined}",
        name=name,
        kind=kind,
        causes=list(causes),
    )


def manifest_invalid(exc: ManifestError, name: str | None) -> dict[str, Any]:
    """422 Invalid for a body the manifest parser refused."""
    causes = [(str(field), str(message)) for field, message in exc.causes]
    return invalid("Pod", name, causes or [("", str(exc))])


def internal_error(message: str) -> dict[str, Any]:
    return status("InternalError", message)


def from_exception(exc: Exception, *, name: str | None = None) -> dict[str, Any] | None:
    """The Status for an error the lifecycle or the manifest parser raised.

    ``name`` is the object's name where the error does not carry it (a
    ManifestError). Returns None for an exception that is not a refusal but a
    bug; the caller answers those with a generic 500.
    """
    if isinstance(exc, NotFound):
        return status("NotFound", str(exc), name=exc.name, kind=_plural(exc.kind))
    if isinstance(exc, AlreadyExists):
        return status("AlreadyExists", str(exc), name=exc.name, kind=_plural(exc.kind))
    if isinstance(exc, Invalid):
        return invalid(exc.kind, exc.name, exc.causes)
    if isinstance(exc, ManifestError):
        return manifest_invalid(exc, name)
    if isinstance(exc, SetupFailed):
        return internal_error(str(exc))
    return None


def _plural(kind: str) -> str:
    return kind.lower() + "s"
