"""The 2015 v1beta1 ReplicationController, translated into the v1 ReplicationController
it describes (stored and run as any v1 one: see ``volfs.workloads``).

A v1beta1 controller keeps its pod in ``desiredState.podTemplate.desiredState.manifest``
(``containers``, ``volumes[].source.emptyDir`` / ``source.hostDir``) and its pod labels
in ``desiredState.podTemplate.labels``. It becomes a v1 controller named ``id`` with
``spec.replicas`` = ``desiredState.replicas``, ``spec.selector`` =
``desiredState.replicaSelector`` and that pod as ``spec.template``, validated like any
v1 controller; errors name the legacy field path.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterable
from typing import Any

from volfs.api.errors import Cause, ManifestError, quote
from volfs.api.workloads import MAX_REPLICAS, Workload, build_replication_controller

__all__ = ["MAX_REPLICAS", "parse_replication_controller"]

_TEMPLATE = "desiredState.podTemplate"
_MANIFEST = f"{_TEMPLATE}.desiredState.manifest"

_FIELDS = {
    "": {
        "apiVersion", "kind", "id", "uid", "namespace", "creationTimestamp", "selfLink",
        "resourceVersion", "labels", "annotations", "desiredState", "currentState",
    },
    "desiredState": {"replicas", "replicaSelector", "podTemplate"},
    _TEMPLATE: {"desiredState", "labels", "annotations", "nodeSelector"},
    f"{_TEMPLATE}.desiredState": {"manifest", "status", "host", "hostIP", "podIP", "info"},
    _MANIFEST: {
        "version", "id", "uuid", "containers", "volumes", "restartPolicy", "dnsPolicy",
    },
}  # fmt: skip
"""The fields each v1beta1 section may have; the rest are unknown, as in v1."""

_SOURCES = {"hostDir": "hostPath", "persistentDisk": "gcePersistentDisk"}
"""v1beta1 volume source names that v1 renamed."""

_RESTART = {"always": "Always", "onFailure": "OnFailure", "never": "Never"}


class _Paths:
    """Maps v1 field paths back to the v1beta1 ones they were translated from."""

    def __init__(self) -> None:
        self._prefixes: dict[str, str] = {
            "metadata.name": "id",
            "metadata.namespace": "namespace",
            "metadata.labels": f"{_TEMPLATE}.labels",
            "metadata.annotations": f"{_TEMPLATE}.annotations",
            "spec.nodeSelector": f"{_TEMPLATE}.nodeSelector",
            "spec": _MANIFEST,
        }

    def add(self, v1: str, legacy: str) -> None:
        self._prefixes[v1] = legacy

    def legacy(self, field: str) -> str:
        """The legacy path of a v1 path (the longest translated prefix is swapped)."""
        for prefix in sorted(self._prefixes, key=len, reverse=True):
            if field == prefix or field.startswith((prefix + ".", prefix + "[")):
                return self._prefixes[prefix] + field[len(prefix) :]
        return field


def parse_replication_controller(doc: dict[str, Any], source: str | None) -> Workload:
    """Translate a v1beta1 ReplicationController into a v1 one, validated.

    Raises:
        ManifestError: a legacy section that is missing, unknown or of the wrong type,
            or a translated controller that fails validation (fields named in v1beta1
            terms).
    """
    causes = list(_check_sections(doc))
    replicas = _replicas(doc, causes)
    if causes:
        raise ManifestError(source, causes)
    template, paths = _translate(doc, causes)
    if causes:
        raise ManifestError(source, causes)
    pod_meta = template["metadata"]
    selector = doc["desiredState"].get("replicaSelector")
    controller = {
        "apiVersion": "v1",
        "kind": "ReplicationController",
        "metadata": {key: value for key, value in (
            ("name", doc["id"]), ("namespace", pod_meta.get("namespace")),
            ("labels", doc.get("labels")), ("annotations", doc.get("annotations")))
            if value is not None},
        "spec": {
            "replicas": replicas,
            "selector": selector,
            "template": {
                "metadata": {k: v for k, v in pod_meta.items()
                             if k in ("labels", "annotations") and v is not None},
                "spec": {k: v for k, v in template["spec"].items() if v is not None},
            },
        },
    }
    try:
        return build_replication_controller(copy.deepcopy(controller), source)
    except ManifestError as err:
        raise err.map_fields(functools.partial(_legacy_path, paths)) from None


def _legacy_path(paths: _Paths, field: str) -> str:
    """A v1 controller's field path, in the v1beta1 terms the user wrote."""
    if field.startswith("spec.template."):
        return paths.legacy(field.removeprefix("spec.template."))
    return {"spec.replicas": "desiredState.replicas",
            "spec.selector": "desiredState.replicaSelector",
            "metadata.name": "id", "metadata.labels": "labels",
            "metadata.annotations": "annotations"}.get(field, paths.legacy(field))


def _check_sections(doc: dict[str, Any]) -> Iterable[Cause]:
    """Causes for the legacy skeleton: each section present, a mapping, no unknown fields."""
    ident = doc.get("id")
    if ident is None or ident == "":
        yield "id", "Required value"
    elif not isinstance(ident, str):
        yield "id", f"Invalid value: {quote(ident)}: must be a string"
    for path, allowed in _FIELDS.items():
        section = _lookup(doc, path)
        if section is None:
            yield path, "Required value"
            return
        if not isinstance(section, dict):
            yield path, f"Invalid value: {quote(section)}: must be a mapping"
            return
        for key in section:
            if key not in allowed:
                yield f"{path}.{key}" if path else str(key), f'unknown field "{key}"'


def _lookup(doc: dict[str, Any], path: str) -> Any:
    node: Any = doc
    for key in filter(None, path.split(".")):
        node = node.get(key) if isinstance(node, dict) else None
    return node


def _replicas(doc: dict[str, Any], causes: list[Cause]) -> int:
    state = doc.get("desiredState")
    value = state.get("replicas", 1) if isinstance(state, dict) else 1
    value = 1 if value is None else value
    path = "desiredState.replicas"
    if isinstance(value, bool) or not isinstance(value, int):
        causes.append((path, f"Invalid value: {quote(value)}: must be an integer"))
    elif value < 0:
        causes.append((path, f"Invalid value: {value}: must be greater than or equal to 0"))
    elif value > MAX_REPLICAS:
        causes.append((path, f"Invalid value: {value}: must be no more than {MAX_REPLICAS}"))
    else:
        return value
    return 0


def _translate(doc: dict[str, Any], causes: list[Cause]) -> tuple[dict[str, Any], _Paths]:
    """The v1 Pod document (without a name) the controller's template describes."""
    template = doc["desiredState"]["podTemplate"]
    manifest = template["desiredState"]["manifest"]
    paths = _Paths()
    spec: dict[str, Any] = {
        "containers": _containers(manifest.get("containers"), paths),
        "volumes": _volumes(manifest.get("volumes"), paths, causes),
        "restartPolicy": _restart_policy(manifest.get("restartPolicy")),
        "dnsPolicy": manifest.get("dnsPolicy"),
        "nodeSelector": template.get("nodeSelector"),
    }
    metadata = {
        "namespace": doc.get("namespace"),
        "labels": template.get("labels"),
        "annotations": template.get("annotations"),
    }
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}, paths


def _containers(containers: Any, paths: _Paths) -> Any:
    if not isinstance(containers, list):
        return containers
    return [_container(c, i, paths) if isinstance(c, dict) else c for i, c in enumerate(containers)]


def _container(container: dict[str, Any], index: int, paths: _Paths) -> dict[str, Any]:
    """A v1 container: same field names, except cpu/memory/privileged and mounts' ``path``."""
    out = dict(container)
    limits = {k: out.pop(k) for k in ("cpu", "memory") if k in out}
    if isinstance(limits.get("cpu"), int):
        limits["cpu"] = f"{limits['cpu']}m"
    if limits:
        out["resources"] = {"limits": limits}
    if "privileged" in out:
        out["securityContext"] = {"privileged": out.pop("privileged")}
    mounts = out.get("volumeMounts")
    if isinstance(mounts, list):
        out["volumeMounts"] = [
            _mount(m, f"spec.containers[{index}].volumeMounts[{j}]", paths)
            for j, m in enumerate(mounts)
        ]
    return out


def _mount(mount: Any, v1_path: str, paths: _Paths) -> Any:
    if not isinstance(mount, dict) or "path" not in mount or mount.get("mountPath") is not None:
        return mount
    out = dict(mount)
    out["mountPath"] = out.pop("path")
    legacy = paths.legacy(v1_path)
    paths.add(f"{v1_path}.mountPath", f"{legacy}.path")
    return out


def _volumes(volumes: Any, paths: _Paths, causes: list[Cause]) -> Any:
    if not isinstance(volumes, list):
        return volumes
    return [
        _volume(v, i, paths, causes) if isinstance(v, dict) else v for i, v in enumerate(volumes)
    ]


def _volume(
    volume: dict[str, Any], index: int, paths: _Paths, causes: list[Cause]
) -> dict[str, Any]:
    """A v1 volume: ``source.<kind>`` lifted to ``<kind>``, v1beta1 kinds renamed."""
    out = {k: v for k, v in volume.items() if k != "source"}
    source = volume.get("source")
    legacy = f"{_MANIFEST}.volumes[{index}].source"
    if source is not None and not isinstance(source, dict):
        causes.append((legacy, f"Invalid value: {quote(source)}: must be a mapping"))
        return out
    for kind, value in (source or {}).items():
        v1_kind = _SOURCES.get(str(kind), str(kind))
        out[v1_kind] = value
        paths.add(f"spec.volumes[{index}].{v1_kind}", f"{legacy}.{kind}")
    return out


def _restart_policy(policy: Any) -> Any:
    """v1beta1 wrote ``{always: {}}`` where v1 writes ``Always``."""
    if isinstance(policy, dict) and len(policy) == 1:
        return _RESTART.get(next(iter(policy)), policy)
    return policy
