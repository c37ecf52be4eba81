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
from volfs.api.errors import quote

# The HTTP code Kubernetes uses for each reason.
_CODES = {
    "BadRequest": 400,
    "Unauthorized": 401,
    "Forbidden": 403,
    "NotFound": 404,
    "MethodNotAllowed": 405,
    "NotAcceptable": 406,
    "AlreadyExists": 409,
    "Conflict": 409,
    "RequestEntityTooLarge": 413,
    "UnsupportedMediaType": 415,
    "Invalid": 422,
    "InternalError": 500,
    "InsufficientStorage": 507,  # the state database's filesystem is full
}

# A field error's reason, told by how its message starts (as Kubernetes' field.Error
# words them: "Required value", "Invalid value: ...", "Forbidden: ...").
_CAUSE_REASONS = (
    ("Required value", "FieldValueRequired"),
    ("Forbidden", "FieldValueForbidden"),
    ("Unsupported value", "FieldValueNotSupported"),
    ("Duplicate value", "FieldValueDuplicate"),
    ("Not found", "FieldValueNotFound"),
    ("Too long", "FieldValueTooLong"),
    ("Too many", "FieldValueTooMany"),
)


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
    group: str | None = None,
    kind: str | None = None,
    causes: Sequence[tuple[str, str]] = (),
) -> dict[str, Any]:
    """A failure Status. ``code`` defaults to the one Kubernetes uses for ``reason``.

    ``causes`` are ``(field, message)`` pairs; each becomes a ``details.causes[]``
    entry whose reason is read off its message (``"Forbidden: ..."`` ->
    ``FieldValueForbidden``, anything unrecognised -> ``FieldValueInvalid``).
    """
    details: dict[str, Any] = {}
    if name is not None:
        details["name"] = name
    if group:
        details["group"] = group
    if kind is not None:
        details["kind"] = kind
    if causes:
        details["causes"] = [
            {"reason": cause_reason(cause_message), "message": cause_message, "field": field}
            for field, cause_message in causes
        ]
    result: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": " ".join(message.split()),  # one line, whatever a cause said
        "reason": reason,
        "code": code if code is not None else _CODES.get(reason, 500),
    }
    if details:
        result["details"] = details
    return result


def cause_reason(message: str) -> str:
    """The ``details.causes[].reason`` for a field error's message.

    >>> cause_reason("Forbidden: pod updates may not change fields"), cause_reason("bad")
    ('FieldValueForbidden', 'FieldValueInvalid')
    """
    for prefix, reason in _CAUSE_REASONS:
        if message.startswith(prefix):
            return reason
    return "FieldValueInvalid"


def bad_request(message: str) -> dict[str, Any]:
    return status("BadRequest", message)


def not_found(resource: str, group: str = "", *, name: str) -> dict[str, Any]:
    """404 for an object: ``pods "web" not found``, ``storageclasses.storage.k8s.io "x" ...``."""
    qualified = f"{resource}.{group}" if group else resource
    return status("NotFound", f'{qualified} "{name}" not found', name=name, group=group,
                  kind=resource)


def already_exists(resource: str, group: str = "", *, name: str) -> dict[str, Any]:
    qualified = f"{resource}.{group}" if group else resource
    return status("AlreadyExists", f'{qualified} "{name}" already exists', name=name,
                  group=group, kind=resource)


def invalid(
    kind: str, name: str | None, causes: Sequence[tuple[str, str]], group: str = ""
) -> dict[str, Any]:
    """422 Invalid, worded as the API server words it.

    >>> invalid("Pod", "web", [("spec.volumes[0].name", "Required value")])["message"]
    'Pod "web" is invalid: spec.volumes[0].name: Required value'
    """
    parts = [f"{field}: {message}" if field else message for field, message in causes]
    # The name as sent, quoted as the causes quote values: escaped, and cut when long.
    shown = quote(name) if name else ""
    what = f"{kind}.{group} {shown}" if group and name else f"{kind} {shown}" if name else kind
    joined = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    return status(
        "Invalid",
        f"{what} is invalid: {joined}",
        name=name,
        group=group,
        kind=kind,
        causes=list(causes),
    )


def manifest_invalid(
    exc: ManifestError, name: str | None, kind: str = "Pod", group: str = ""
) -> dict[str, Any]:
    """422 Invalid for a body the manifest parser refused."""
    causes = [(str(field), str(message)) for field, message in exc.causes]
    return invalid(kind, name, causes or [("", str(exc))], group)


def method_not_allowed(method: str, path: str) -> dict[str, Any]:
    return status(
        "MethodNotAllowed",
        f"the server does not allow this method on the requested resource ({method} {path})",
    )


def unauthorized() -> dict[str, Any]:
    """401, exactly as the API server answers a request it cannot authenticate."""
    return status("Unauthorized", "Unauthorized")


def internal_error(message: str) -> dict[str, Any]:
    return status("InternalError", message)
