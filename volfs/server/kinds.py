"""The kinds volfs serves: their descriptors, and the services of pods, namespaces and events.

Served from the start: ``pods`` (the lifecycle's PodService), ``namespaces`` (derived:
``default`` plus every namespace that holds an object) and ``events`` (what the
lifecycle recorded, see ``volfs.state.events``).

``replicationcontrollers`` (rc) and ``apps/v1`` ``statefulsets`` (sts) are registered by
:func:`register_workloads`, over the workload controller (``volfs.workloads``).

Described here for the NFS work to register with its own services (one line each in
the daemon, see ``volfs.server.resources``): ``persistentvolumes`` (pv),
``persistentvolumeclaims`` (pvc) and ``storage.k8s.io/v1`` ``storageclasses`` (sc).
"""

from __future__ import annotations

import datetime
import uuid
from typing import Any

from volfs.api import parse_pod
from volfs.api.errors import NotFound
from volfs.lifecycle.service import DeleteResult, PodService
from volfs.server.patch import EVENT_SCHEMA, POD_SCHEMA
from volfs.server.resources import Resource, ResourceRegistry
from volfs.server.selectors import path_getter
from volfs.server.tables import (
    EVENT_COLUMNS,
    NAMESPACE_COLUMNS,
    PERSISTENT_VOLUME_CLAIM_COLUMNS,
    PERSISTENT_VOLUME_COLUMNS,
    POD_COLUMNS,
    REPLICATION_CONTROLLER_COLUMNS,
    STATEFUL_SET_COLUMNS,
    STORAGE_CLASS_COLUMNS,
)
from volfs.server.workloads import LegacyControllerResource, WorkloadResource
from volfs.state import AsyncStateDB
from volfs.state.events import EVENT
from volfs.workloads import Workloads

__all__ = [
    "EVENTS",
    "NAMESPACES",
    "PERSISTENT_VOLUMES",
    "PERSISTENT_VOLUME_CLAIMS",
    "PODS",
    "REPLICATION_CONTROLLERS",
    "STATEFUL_SETS",
    "STORAGE_CLASSES",
    "EventResource",
    "NamespaceResource",
    "PodResource",
    "core_registry",
    "register_workloads",
]

Object = dict[str, Any]
ALL_VERBS = ("create", "delete", "get", "list", "patch", "update", "watch")
READ_VERBS = ("get", "list", "watch")
DEFAULT_NAMESPACE = "default"

PODS = Resource(
    name="pods", singular_name="pod", kind="Pod", namespaced=True, verbs=ALL_VERBS,
    short_names=("po",), categories=("all",), columns=POD_COLUMNS, patch_schema=POD_SCHEMA,
    field_selectors={
        "spec.nodeName": path_getter("spec.nodeName"),
        "spec.restartPolicy": path_getter("spec.restartPolicy"),
        "spec.schedulerName": path_getter("spec.schedulerName"),
        "spec.serviceAccountName": path_getter("spec.serviceAccountName"),
        "status.phase": path_getter("status.phase"),
        "status.podIP": path_getter("status.podIP"),
        "status.nominatedNodeName": path_getter("status.nominatedNodeName"),
    },
)
NAMESPACES = Resource(
    name="namespaces", singular_name="namespace", kind="Namespace", namespaced=False,
    verbs=READ_VERBS, short_names=("ns",), columns=NAMESPACE_COLUMNS,
    field_selectors={"status.phase": path_getter("status.phase")},
)
EVENTS = Resource(
    name="events", singular_name="event", kind="Event", namespaced=True, verbs=READ_VERBS,
    short_names=("ev",), columns=EVENT_COLUMNS, patch_schema=EVENT_SCHEMA,
    field_selectors={
        f: path_getter(f) for f in (
            "involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
            "involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion",
            "involvedObject.fieldPath", "reason", "reportingComponent", "type")
    } | {"source": path_getter("source.component")},
)
PERSISTENT_VOLUMES = Resource(
    name="persistentvolumes", singular_name="persistentvolume", kind="PersistentVolume",
    namespaced=False, verbs=ALL_VERBS, short_names=("pv",), columns=PERSISTENT_VOLUME_COLUMNS,
    field_selectors={"status.phase": path_getter("status.phase")},
)
PERSISTENT_VOLUME_CLAIMS = Resource(
    name="persistentvolumeclaims", singular_name="persistentvolumeclaim",
    kind="PersistentVolumeClaim", namespaced=True, verbs=ALL_VERBS, short_names=("pvc",),
    columns=PERSISTENT_VOLUME_CLAIM_COLUMNS,
)
STORAGE_CLASSES = Resource(
    name="storageclasses", singular_name="storageclass", kind="StorageClass",
    group="storage.k8s.io", namespaced=False, verbs=ALL_VERBS, short_names=("sc",),
    columns=STORAGE_CLASS_COLUMNS,
)

REPLICATION_CONTROLLERS = Resource(
    name="replicationcontrollers", singular_name="replicationcontroller",
    kind="ReplicationController", namespaced=True, verbs=ALL_VERBS, short_names=("rc",),
    categories=("all",), columns=REPLICATION_CONTROLLER_COLUMNS, scalable=True,
    field_selectors={"status.replicas": path_getter("status.replicas")},
)
LEGACY_REPLICATION_CONTROLLERS = Resource(
    name="replicationcontrollers", singular_name="replicationcontroller",
    kind="ReplicationController", version="v1beta1", namespaced=True,
    verbs=("create", "delete", "get", "list", "patch", "update"), short_names=("rc",),
    columns=REPLICATION_CONTROLLER_COLUMNS,
)
STATEFUL_SETS = Resource(
    name="statefulsets", singular_name="statefulset", kind="StatefulSet", group="apps",
    namespaced=True, verbs=ALL_VERBS, short_names=("sts",), categories=("all",),
    columns=STATEFUL_SET_COLUMNS, scalable=True,
)


def register_workloads(registry: ResourceRegistry, workloads: Workloads) -> None:
    """Serve ``replicationcontrollers`` (rc) and ``apps/v1`` ``statefulsets`` (sts), and
    the seed's ``v1beta1`` controllers (created as v1 ones)."""
    registry.register(REPLICATION_CONTROLLERS,
                      WorkloadResource(workloads, workloads.controllers))
    registry.register(STATEFUL_SETS, WorkloadResource(workloads, workloads.stateful_sets))
    registry.register(LEGACY_REPLICATION_CONTROLLERS, LegacyControllerResource(workloads))


def core_registry(pods: PodService, db: AsyncStateDB | None = None,
                  started: datetime.datetime | None = None) -> ResourceRegistry:
    """A registry serving ``pods`` and ``namespaces``, and ``events`` when ``db`` is given.

    ``started`` is when the daemon started: the creation time of the ``default``
    namespace while it holds nothing.
    """
    registry = ResourceRegistry()
    registry.register(PODS, PodResource(pods))
    registry.register(NAMESPACES, NamespaceResource(registry, started))
    if db is not None:
        registry.register(EVENTS, EventResource(db))
    return registry


class PodResource:
    """Pods as a ResourceService, over the lifecycle's PodService."""

    def __init__(self, pods: PodService) -> None:
        self._pods = pods

    async def create(self, obj: Object) -> Object:
        # A v1 List or a legacy controller is not one pod: parse_pod refuses it.
        return await self._pods.create_pod(parse_pod(obj, None))

    async def get(self, namespace: str | None, name: str) -> Object:
        return await self._pods.get_pod(namespace or DEFAULT_NAMESPACE, name)

    async def list(self, namespace: str | None) -> list[Object]:
        return await self._pods.list_pods(namespace)

    async def delete(self, namespace: str | None, name: str) -> DeleteResult:
        return await self._pods.delete_pod(namespace or DEFAULT_NAMESPACE, name)

    async def delete_with_grace(self, namespace: str | None, name: str,
                                grace_seconds: int) -> DeleteResult:
        return await self._pods.delete_pod(namespace or DEFAULT_NAMESPACE, name,
                                           grace_seconds=grace_seconds)

    async def update(self, obj: Object) -> Object:
        return await self._pods.update_pod(obj)


class NamespaceResource:
    """Namespaces: ``default``, and every namespace an object of a namespaced kind is in.

    volfs creates namespaces implicitly, as objects name them; a namespace's
    creation time is that of its oldest object, and its uid is derived from its name.
    """

    def __init__(self, registry: ResourceRegistry,
                 started: datetime.datetime | None = None) -> None:
        self._registry = registry
        self._started = (started or datetime.datetime.now(datetime.UTC)).strftime(
            "%Y-%m-%dT%H:%M:%SZ")

    async def get(self, namespace: str | None, name: str) -> Object:
        for obj in await self.list(None):
            if obj["metadata"]["name"] == name:
                return obj
        raise NotFound("Namespace", None, name)

    async def list(self, namespace: str | None) -> list[Object]:
        oldest: dict[str, str] = {}
        for entry in self._registry:
            resource = entry.resource
            if not resource.namespaced or "list" not in resource.verbs:
                continue
            for obj in await entry.service.list(None):
                meta = obj.get("metadata") or {}
                ns = meta.get("namespace") or DEFAULT_NAMESPACE
                created = str(meta.get("creationTimestamp") or self._started)
                if ns not in oldest or created < oldest[ns]:
                    oldest[ns] = created
        oldest.setdefault(DEFAULT_NAMESPACE, self._started)
        return [_namespace(name, oldest[name]) for name in sorted(oldest)]


def _namespace(name: str, created: str) -> Object:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": name,
            "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"volfs:namespace:{name}")),
            "creationTimestamp": created,
            "labels": {"kubernetes.io/metadata.name": name},
        },
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    }


class EventResource:
    """Events the lifecycle recorded in the state database (read-only)."""

    def __init__(self, db: AsyncStateDB) -> None:
        self._db = db

    async def get(self, namespace: str | None, name: str) -> Object:
        obj = await self._db.get(EVENT, namespace or DEFAULT_NAMESPACE, name)
        if obj is None:
            raise NotFound(EVENT, namespace, name)
        return obj

    async def list(self, namespace: str | None) -> list[Object]:
        return await self._db.list(EVENT, namespace)
