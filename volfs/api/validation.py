"""Turn a decoded document into a valid Pod, or say every way in which it is not one.

Two passes, as in Kubernetes: the document must first decode into the models (known
fields, right types; see :mod:`volfs.api.models`), then the decoded Pod must follow
the rules that span fields (names, references, paths), checked by :func:`validate_pod`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from volfs.api.errors import Cause, ManifestError, field_path, quote
from volfs.api.models import Container, ObjectMeta, Pod, PodSpec, Volume, VolumeMount

__all__ = ["build_pod", "check_label", "check_subdomain", "decode_causes", "validate_pod"]

_LABEL_MAX, _SUBDOMAIN_MAX = 63, 253
_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", re.ASCII)
_SUBDOMAIN = re.compile(
    r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*", re.ASCII
)
_LABEL_RULE = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character"
)
_SUBDOMAIN_RULE = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
    "'-' or '.', and must start and end with an alphanumeric character"
)
_SHOULD_BE = {
    "string_type": "a string",
    "bool_type": "a boolean",
    "int_type": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}


def build_pod(doc: dict[str, Any], source: str | None) -> Pod:
    """Decode and validate one Pod document.

    Raises:
        ManifestError: with every cause of the first pass that fails (decoding, then rules).
    """
    try:
        pod = Pod.model_validate(doc, by_alias=True, by_name=False)
    except ValidationError as exc:
        raise ManifestError(source, decode_causes(exc, doc)) from None
    causes = validate_pod(pod)
    if causes:
        raise ManifestError(source, causes)
    return pod


def decode_causes(exc: ValidationError, doc: Any) -> list[Cause]:
    """Pydantic's errors as Kubernetes-style causes, in the order the document has them."""
    errors = sorted(exc.errors(), key=lambda e: _document_order(doc, e["loc"]))
    return [_decode_cause(error) for error in errors]


def _decode_cause(error: ErrorDetails) -> Cause:
    loc, kind = list(error["loc"]), error["type"]
    if loc and loc[-1] == "[key]":
        return field_path(loc[:-2]), f"Invalid value: {quote(loc[-2])}: keys must be strings"
    path = field_path(loc)
    if kind == "extra_forbidden":
        return path, f'unknown field "{loc[-1]}"'
    if kind == "volfs":
        return path, error["msg"]
    if kind == "missing":
        return path, "Required value"
    should_be = _SHOULD_BE.get(kind)
    detail = f"must be {should_be}" if should_be else error["msg"]
    return path, f"Invalid value: {quote(error['input'])}: {detail}"


def _document_order(doc: Any, loc: Sequence[str | int]) -> list[int]:
    """Where ``loc`` lies in ``doc``: the index of each key or item on the way down."""
    order, node = [], doc
    for part in loc:
        if isinstance(node, dict):
            keys = list(node)
            order.append(keys.index(part) if part in keys else len(keys))
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            order.append(part)
            node = node[part]
        else:
            order.append(0)
            node = None
    return order


def validate_pod(pod: Pod) -> list[Cause]:
    """Every rule the pod breaks, as ``(field, message)``; empty when it is valid."""
    return [*_check_metadata(pod.metadata), *_check_spec(pod.spec)]


def _check_metadata(meta: ObjectMeta) -> Iterator[Cause]:
    if not meta.name:
        detail = ": volfs does not generate names" if meta.generate_name else ""
        yield "metadata.name", f"Required value{detail}"
    else:
        yield from check_subdomain("metadata.name", meta.name)
    yield from check_label("metadata.namespace", meta.namespace)


def _check_spec(spec: PodSpec) -> Iterator[Cause]:
    yield from _check_volumes(spec.volumes)
    if not spec.containers:
        yield "spec.containers", "Required value"
    volume_names = {v.name for v in spec.volumes}
    seen: set[str] = set()
    for group, containers in (
        ("initContainers", spec.init_containers),
        ("containers", spec.containers),
    ):
        for i, container in enumerate(containers):
            path = f"spec.{group}[{i}]"
            yield from _check_container(path, container, volume_names, seen)


def _check_volumes(volumes: list[Volume]) -> Iterator[Cause]:
    seen: set[str] = set()
    for i, volume in enumerate(volumes):
        path = f"spec.volumes[{i}]"
        if not volume.name:
            yield f"{path}.name", "Required value"
        elif volume.name in seen:
            yield f"{path}.name", f"Duplicate value: {quote(volume.name)}"
        else:
            yield from check_label(f"{path}.name", volume.name)
        seen.add(volume.name)
        yield from _check_source(path, volume)


def _check_source(path: str, volume: Volume) -> Iterator[Cause]:
    if len(volume.source_kinds()) != 1:
        yield path, "must specify exactly one volume source"
        return
    if volume.host_path is not None:
        yield from _check_absolute(f"{path}.hostPath.path", volume.host_path.path)
    if volume.nfs is not None:
        if not volume.nfs.server:
            yield f"{path}.nfs.server", "Required value"
        yield from _check_absolute(f"{path}.nfs.path", volume.nfs.path)
    claim = volume.persistent_volume_claim
    if claim is not None and not claim.claim_name:
        yield f"{path}.persistentVolumeClaim.claimName", "Required value"


def _check_container(
    path: str, container: Container, volume_names: set[str], seen: set[str]
) -> Iterator[Cause]:
    if not container.name:
        yield f"{path}.name", "Required value"
    elif container.name in seen:
        yield f"{path}.name", f"Duplicate value: {quote(container.name)}"
    else:
        yield from check_label(f"{path}.name", container.name)
    seen.add(container.name)
    mount_paths: set[str] = set()
    for j, mount in enumerate(container.volume_mounts):
        yield from _check_mount(f"{path}.volumeMounts[{j}]", mount, volume_names, mount_paths)


def _check_mount(
    path: str, mount: VolumeMount, volume_names: set[str], mount_paths: set[str]
) -> Iterator[Cause]:
    if not mount.name:
        yield f"{path}.name", "Required value"
    elif mount.name not in volume_names:
        yield f"{path}.name", f"Not found: {quote(mount.name)}"
    if not mount.mount_path:
        yield f"{path}.mountPath", "Required value"
    elif mount.mount_path in mount_paths:
        yield f"{path}.mountPath", f"Invalid value: {quote(mount.mount_path)}: must be unique"
    mount_paths.add(mount.mount_path)
    if mount.sub_path:
        yield from _check_relative(f"{path}.subPath", mount.sub_path)
    if mount.sub_path_expr is not None:
        yield f"{path}.subPathExpr", "Forbidden: volfs does not expand subPathExpr; use subPath"


def _check_absolute(path: str, value: str) -> Iterator[Cause]:
    if not value:
        yield path, "Required value"
        return
    if not value.startswith("/"):
        yield path, f"Invalid value: {quote(value)}: must be an absolute path"
    yield from _check_no_backsteps(path, value)


def _check_relative(path: str, value: str) -> Iterator[Cause]:
    if value.startswith("/"):
        yield path, f"Invalid value: {quote(value)}: must be a relative path"
    yield from _check_no_backsteps(path, value)


def _check_no_backsteps(path: str, value: str) -> Iterator[Cause]:
    if ".." in value.split("/"):
        yield path, f"Invalid value: {quote(value)}: must not contain '..'"


def check_label(path: str, value: str) -> Iterator[Cause]:
    """Causes for a name that must be a DNS-1123 label (namespaces, volumes, containers)."""
    if len(value) > _LABEL_MAX:
        yield path, f"Invalid value: {quote(value)}: must be no more than {_LABEL_MAX} characters"
    if not _LABEL.fullmatch(value):
        yield path, f"Invalid value: {quote(value)}: {_LABEL_RULE}"


def check_subdomain(path: str, value: str) -> Iterator[Cause]:
    """Causes for a name that must be a DNS-1123 subdomain (object names)."""
    if len(value) > _SUBDOMAIN_MAX:
        too_long = f"must be no more than {_SUBDOMAIN_MAX} characters"
        yield path, f"Invalid value: {quote(value)}: {too_long}"
    if not _SUBDOMAIN.fullmatch(value):
        yield path, f"Invalid value: {quote(value)}: {_SUBDOMAIN_RULE}"
