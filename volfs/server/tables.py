"""``meta.k8s.io`` Tables: what ``kubectl get`` prints, computed by the server.

kubectl asks for a Table with ``Accept: application/json;as=Table;v=v1;g=meta.k8s.io``;
the server answers with the columns it defines for the kind and one row of cells per
object, as the API server's printers do (``pkg/printers/internalversion``). Each kind's
columns are a tuple of :class:`Column` on its descriptor; a kind that defines none gets
NAME and AGE.

>>> [c.name for c in POD_COLUMNS if c.priority == 0]
['Name', 'Ready', 'Status', 'Restarts', 'Age']
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from volfs.api.times import age

__all__ = [
    "DEFAULT_COLUMNS",
    "EVENT_COLUMNS",
    "NAMESPACE_COLUMNS",
    "PERSISTENT_VOLUME_CLAIM_COLUMNS",
    "PERSISTENT_VOLUME_COLUMNS",
    "POD_COLUMNS",
    "REPLICATION_CONTROLLER_COLUMNS",
    "STATEFUL_SET_COLUMNS",
    "STORAGE_CLASS_COLUMNS",
    "Column",
    "table",
]

Object = dict[str, Any]
Cell = Callable[[Object, datetime], Any]


@dataclass(frozen=True)
class Column:
    """One column: its ``columnDefinitions`` entry and how to compute a row's cell.

    ``priority`` 0 columns are printed by ``kubectl get``, 1 only by ``-o wide``.
    """

    name: str
    cell: Cell
    type: str = "string"
    format: str = ""
    description: str = ""
    priority: int = 0

    def definition(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "format": self.format,
                "description": self.description, "priority": self.priority}


def table(
    columns: Sequence[Column],
    objects: Iterable[Object],
    *,
    version: str = "v1",
    include_object: str = "Metadata",
    resource_version: str = "",
    now: datetime | None = None,
) -> dict[str, Any]:
    """A ``meta.k8s.io/<version>`` Table of ``objects``.

    ``include_object`` is the request's ``includeObject``: ``"None"``, ``"Metadata"``
    (the default; each row carries a PartialObjectMetadata, which kubectl reads for
    ``--show-labels``, ``-L`` and the NAMESPACE column) or ``"Object"``.
    """
    now = now or datetime.now(UTC)
    rows = []
    for obj in objects:
        row: dict[str, Any] = {"cells": [column.cell(obj, now) for column in columns]}
        if include_object == "Object":
            row["object"] = obj
        elif include_object != "None":
            row["object"] = {"kind": "PartialObjectMetadata",
                             "apiVersion": f"meta.k8s.io/{version}",
                             "metadata": obj.get("metadata") or {}}
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": f"meta.k8s.io/{version}",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": [column.definition() for column in columns],
        "rows": rows,
    }


# -- cells ------------------------------------------------------------------------------


def _get(obj: Any, *path: str) -> Any:
    for part in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj


def _text(value: Any, empty: str = "<none>") -> str:
    if value is None or value == "" or value == []:
        return empty
    return str(value)


def _name(obj: Object, now: datetime) -> str:
    return str(_get(obj, "metadata", "name") or "")


def _age(obj: Object, now: datetime) -> str:
    return age(_get(obj, "metadata", "creationTimestamp"), now)


NAME = Column("Name", _name, format="name",
              description="Name must be unique within a namespace.")
AGE = Column("Age", _age, description="CreationTimestamp is a timestamp representing the "
             "server time when this object was created.")
DEFAULT_COLUMNS = (NAME, AGE)


# -- pods -------------------------------------------------------------------------------


def _container_statuses(pod: Object) -> list[Object]:
    statuses = _get(pod, "status", "containerStatuses")
    return [s for s in statuses if isinstance(s, dict)] if isinstance(statuses, list) else []


def _pod_ready(pod: Object, now: datetime) -> str:
    """Ready containers of all; ``-`` for a pod without ``status.containerStatuses``:
    volfs runs none of its containers, so none can be ready or not (``0/1`` would read
    as a container that is broken)."""
    if not isinstance(_get(pod, "status", "containerStatuses"), list):
        return "-"
    containers = _get(pod, "spec", "containers")
    total = len(containers) if isinstance(containers, list) else 0
    ready = sum(1 for s in _container_statuses(pod) if s.get("ready") is True)
    return f"{ready}/{total}"


def _pod_status(pod: Object, now: datetime) -> str:
    """kubectl's STATUS: the phase, overridden by a reason, a container's state, deletion."""
    reason = _get(pod, "status", "reason") or _get(pod, "status", "phase") or "Unknown"
    for status in _container_statuses(pod):
        waiting = _get(status, "state", "waiting", "reason")
        terminated = _get(status, "state", "terminated")
        if waiting:
            reason = waiting
        elif isinstance(terminated, dict):
            reason = terminated.get("reason") or (
                f"Signal:{terminated['signal']}" if terminated.get("signal")
                else f"ExitCode:{terminated.get('exitCode', 0)}")
    if _get(pod, "metadata", "deletionTimestamp"):
        reason = "Terminating"
    return str(reason)


def _pod_restarts(pod: Object, now: datetime) -> str:
    total = sum(int(s.get("restartCount") or 0) for s in _container_statuses(pod))
    return str(total)


def _pod_ip(pod: Object, now: datetime) -> str:
    return _text(_get(pod, "status", "podIP"))


def _pod_node(pod: Object, now: datetime) -> str:
    return _text(_get(pod, "spec", "nodeName"))


def _pod_nominated_node(pod: Object, now: datetime) -> str:
    return _text(_get(pod, "status", "nominatedNodeName"))


def _pod_readiness_gates(pod: Object, now: datetime) -> str:
    gates = _get(pod, "spec", "readinessGates")
    if not isinstance(gates, list) or not gates:
        return "<none>"
    conditions = _get(pod, "status", "conditions") or []
    true = {c.get("conditionType") or c.get("type") for c in conditions
            if isinstance(c, dict) and c.get("status") == "True"}
    met = sum(1 for g in gates if isinstance(g, dict) and g.get("conditionType") in true)
    return f"{met}/{len(gates)}"


POD_COLUMNS = (
    NAME,
    Column("Ready", _pod_ready, description="The aggregate readiness state of this pod for "
           "accepting traffic."),
    Column("Status", _pod_status, description="The aggregate status of the containers in "
           "this pod."),
    Column("Restarts", _pod_restarts, description="The number of times the containers in "
           "this pod have been restarted."),
    AGE,
    Column("IP", _pod_ip, priority=1, description="IP address allocated to the pod."),
    Column("Node", _pod_node, priority=1, description="Name of the node the pod is on."),
    Column("Nominated Node", _pod_nominated_node, priority=1,
           description="Name of the node nominated to run the pod."),
    Column("Readiness Gates", _pod_readiness_gates, priority=1,
           description="Readiness gates of the pod."),
    Column("Controlled By", lambda pod, now: _controlled_by(pod, now), priority=1,
           description="The workload that keeps this pod (its controller reference)."),
)


# -- namespaces and events ------------------------------------------------------------------

def _phase(obj: Object, now: datetime) -> str:
    """kubectl's STATUS of a PV, claim or namespace: its phase, ``Terminating`` once
    it is being deleted."""
    if _get(obj, "metadata", "deletionTimestamp"):
        return "Terminating"
    return str(_get(obj, "status", "phase") or "")


NAMESPACE_COLUMNS = (
    NAME,
    Column("Status", _phase,
           description="The status of the namespace."),
    AGE,
)


def _event_last_seen(event: Object, now: datetime) -> str:
    when = (_get(event, "series", "lastObservedTime") or event.get("lastTimestamp")
            or event.get("eventTime") or event.get("firstTimestamp"))
    return age(when, now)


def _event_object(event: Object, now: datetime) -> str:
    kind = str(_get(event, "involvedObject", "kind") or "").lower()
    return f"{kind}/{_get(event, 'involvedObject', 'name') or ''}"


def _event_source(event: Object, now: datetime) -> str:
    component = _get(event, "source", "component") or event.get("reportingComponent") or ""
    host = _get(event, "source", "host")
    return f"{component}, {host}" if host else str(component)


EVENT_COLUMNS = (
    Column("Last Seen", _event_last_seen, description="Time since the event was last seen."),
    Column("Type", lambda e, now: str(e.get("type") or ""),
           description="Type of this event (Normal, Warning)."),
    Column("Reason", lambda e, now: str(e.get("reason") or ""),
           description="Why the action was taken."),
    Column("Object", _event_object, description="The object this event is about."),
    Column("Subobject", lambda e, now: str(_get(e, "involvedObject", "fieldPath") or ""),
           priority=1, description="The part of the object this event is about."),
    Column("Source", _event_source, priority=1, description="The component reporting it."),
    Column("Message", lambda e, now: str(e.get("message") or ""),
           description="A human-readable description of the status of this operation."),
    Column("First Seen", lambda e, now: age(e.get("firstTimestamp") or e.get("eventTime"),
                                               now),
           priority=1, description="Time since the event was first seen."),
    Column("Count", lambda e, now: int(e.get("count") or 1), type="integer", priority=1,
           description="How many times the event occurred."),
    Column("Name", _name, format="name", priority=1,
           description="Name must be unique within a namespace."),
)


# -- storage (registered by the NFS work) ---------------------------------------------------

_ACCESS_MODES = {"ReadWriteOnce": "RWO", "ReadOnlyMany": "ROX", "ReadWriteMany": "RWX",
                 "ReadWriteOncePod": "RWOP"}


def _access_modes(modes: Any) -> str:
    if not isinstance(modes, list) or not modes:
        return ""
    return ",".join(_ACCESS_MODES.get(str(m), str(m)) for m in modes)


def _claim(pv: Object, now: datetime) -> str:
    ref = _get(pv, "spec", "claimRef")
    if not isinstance(ref, dict):
        return ""
    return f"{ref.get('namespace', '')}/{ref.get('name', '')}"


def _storage_class(obj: Object, now: datetime) -> str:
    return str(_get(obj, "spec", "storageClassName") or "")


def _volume_attributes_class(obj: Object, now: datetime) -> str:
    return _text(_get(obj, "spec", "volumeAttributesClassName"), "<unset>")


def _volume_mode(obj: Object, now: datetime) -> str:
    return str(_get(obj, "spec", "volumeMode") or "Filesystem")


PERSISTENT_VOLUME_COLUMNS = (
    NAME,
    Column("Capacity", lambda pv, now: str(_get(pv, "spec", "capacity", "storage") or ""),
           description="The size of the volume."),
    Column("Access Modes", lambda pv, now: _access_modes(_get(pv, "spec", "accessModes")),
           description="The ways the volume can be mounted."),
    Column("Reclaim Policy", lambda pv, now: str(
        _get(pv, "spec", "persistentVolumeReclaimPolicy") or ""),
        description="What happens to the volume when its claim is released."),
    Column("Status", _phase, description="The phase of the volume."),
    Column("Claim", _claim, description="The claim bound to the volume."),
    Column("StorageClass", _storage_class, description="The class of the volume."),
    Column("VolumeAttributesClass", _volume_attributes_class,
           description="The volume attributes class of the volume."),
    Column("Reason", lambda pv, now: str(_get(pv, "status", "reason") or ""),
           description="Why the volume is in its phase."),
    AGE,
    Column("VolumeMode", _volume_mode, priority=1, description="Filesystem or Block."),
)


def _claim_capacity(pvc: Object, now: datetime) -> str:
    if _get(pvc, "status", "phase") != "Bound":
        return ""
    return str(_get(pvc, "status", "capacity", "storage") or "")


def _claim_access_modes(pvc: Object, now: datetime) -> str:
    if _get(pvc, "status", "phase") != "Bound":
        return ""
    return _access_modes(_get(pvc, "status", "accessModes"))


PERSISTENT_VOLUME_CLAIM_COLUMNS = (
    NAME,
    Column("Status", _phase, description="The phase of the claim."),
    Column("Volume", lambda pvc, now: str(_get(pvc, "spec", "volumeName") or ""),
           description="The volume bound to the claim."),
    Column("Capacity", _claim_capacity, description="The size of the bound volume."),
    Column("Access Modes", _claim_access_modes,
           description="The ways the bound volume can be mounted."),
    Column("StorageClass", _storage_class, description="The class of the claim."),
    Column("VolumeAttributesClass", _volume_attributes_class,
           description="The volume attributes class of the claim."),
    AGE,
    Column("VolumeMode", _volume_mode, priority=1, description="Filesystem or Block."),
)

_DEFAULT_CLASS_ANNOTATIONS = ("storageclass.kubernetes.io/is-default-class",
                              "storageclass.beta.kubernetes.io/is-default-class")


def _class_name(sc: Object, now: datetime) -> str:
    name = _name(sc, now)
    annotations = _get(sc, "metadata", "annotations") or {}
    if any(annotations.get(key) == "true" for key in _DEFAULT_CLASS_ANNOTATIONS):
        name += " (default)"
    return name


STORAGE_CLASS_COLUMNS = (
    Column("Name", _class_name, format="name", description="Name of the class."),
    Column("Provisioner", lambda sc, now: str(sc.get("provisioner") or ""),
           description="Who makes volumes of this class."),
    Column("ReclaimPolicy", lambda sc, now: str(sc.get("reclaimPolicy") or "Delete"),
           description="What happens to volumes of this class when released."),
    Column("VolumeBindingMode", lambda sc, now: str(sc.get("volumeBindingMode") or "Immediate"),
           description="When volumes of this class are bound."),
    Column("AllowVolumeExpansion", lambda sc, now: str(
        bool(sc.get("allowVolumeExpansion"))).lower(),
        description="Whether volumes of this class may grow."),
    AGE,
)


# -- workloads ------------------------------------------------------------------------------


def _count(obj: Object, *path: str) -> int:
    value = _get(obj, *path)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _selector_text(obj: Object, now: datetime) -> str:
    selector = _get(obj, "spec", "selector")
    if isinstance(selector, dict) and isinstance(selector.get("matchLabels"), dict):
        selector = selector["matchLabels"]
    if not isinstance(selector, dict) or not selector:
        return "<none>"
    return ",".join(f"{k}={v}" for k, v in selector.items())


def _template_containers(obj: Object) -> list[Object]:
    containers = _get(obj, "spec", "template", "spec", "containers")
    return [c for c in containers if isinstance(c, dict)] if isinstance(containers, list) else []


_CONTAINERS = Column("Containers", lambda o, now: ",".join(
    str(c.get("name") or "") for c in _template_containers(o)), priority=1,
    description="Names of each container in the template.")
_IMAGES = Column("Images", lambda o, now: ",".join(
    str(c.get("image") or "") for c in _template_containers(o)), priority=1,
    description="Images referenced by each container in the template.")

REPLICATION_CONTROLLER_COLUMNS = (
    NAME,
    Column("Desired", lambda o, now: _count(o, "spec", "replicas"), type="integer",
           description="Number of desired pods."),
    Column("Current", lambda o, now: _count(o, "status", "replicas"), type="integer",
           description="Number of actually running pods."),
    Column("Ready", lambda o, now: _count(o, "status", "readyReplicas"), type="integer",
           description="Number of pods ready."),
    AGE,
    _CONTAINERS,
    _IMAGES,
    Column("Selector", _selector_text, priority=1,
           description="Label selector of the pods this controller keeps."),
)

STATEFUL_SET_COLUMNS = (
    NAME,
    Column("Ready", lambda o, now: f"{_count(o, 'status', 'readyReplicas')}/"
           f"{_count(o, 'spec', 'replicas')}", description="Ready pods of those desired."),
    AGE,
    _CONTAINERS,
    _IMAGES,
)


def _controlled_by(pod: Object, now: datetime) -> str:
    """``ReplicationController/web``: the pod's controller, if it has one."""
    for ref in _get(pod, "metadata", "ownerReferences") or []:
        if isinstance(ref, dict) and ref.get("controller") is True:
            return f"{ref.get('kind')}/{ref.get('name')}"
    return "<none>"


