"""The stored ReplicationControllers and StatefulSets: what the API creates, reads,
updates and scales, and the status the reconcilers write back.

One lock (shared with the reconcilers, see :mod:`volfs.workloads.controller`) orders
every write of a workload, so a status written by a reconciler never undoes a user's
update made meanwhile: the status is laid over the object as stored at that moment.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import trio

from volfs.api.errors import AlreadyExists, Conflict, Invalid, ManifestError, NotFound
from volfs.api.times import timestamp_now
from volfs.api.workloads import REPLICATION_CONTROLLER, Workload
from volfs.state import AsyncStateDB

Object = dict[str, Any]
Build = Callable[[Object, str | None], Workload]

# Metadata an update cannot set: kept from the stored object.
_SYSTEM_METADATA = ("name", "namespace", "uid", "resourceVersion", "creationTimestamp",
                    "deletionTimestamp", "generation", "selfLink", "managedFields")


class WorkloadStore:
    """The objects of one workload kind in the state database.

    ``wake`` is called after every change a reconciler must act on.
    """

    def __init__(self, db: AsyncStateDB, kind: str, build: Build, lock: trio.Lock,
                 wake: Callable[[], None]) -> None:
        self.kind = kind
        self._db = db
        self._build = build
        self._lock = lock
        self._wake = wake

    async def create(self, obj: Object) -> Object:
        """Store a new workload. Raises ManifestError, AlreadyExists."""
        doc = self._build(obj, None).to_k8s()
        meta = doc["metadata"]
        async with self._lock:
            if await self._db.get(self.kind, meta["namespace"], meta["name"]) is not None:
                raise AlreadyExists(self.kind, meta["namespace"], meta["name"])
            meta.update(uid=str(uuid.uuid4()), creationTimestamp=timestamp_now(), generation=1)
            doc["status"] = {"replicas": 0, "observedGeneration": 0}
            if self.kind == REPLICATION_CONTROLLER:
                doc["status"]["fullyLabeledReplicas"] = 0
            stored = await self._db.put(doc)
        self._wake()
        return stored

    async def get(self, namespace: str, name: str) -> Object:
        obj = await self._db.get(self.kind, namespace, name)
        if obj is None:
            raise NotFound(self.kind, namespace, name)
        return obj

    async def list(self, namespace: str | None) -> list[Object]:
        return await self._db.list(self.kind, namespace)

    async def update(self, obj: Object) -> Object:
        """Replace the spec, labels and annotations (PUT, PATCH, re-apply, scale).

        ``metadata.resourceVersion``, when given, must be the stored one. The
        generation counts changes of the spec. Raises NotFound, Conflict, Invalid.
        """
        meta = obj.get("metadata") or {}
        namespace, name = meta.get("namespace") or "default", str(meta.get("name") or "")
        try:
            new = self._build(obj, None).to_k8s()
        except ManifestError as exc:
            raise Invalid(self.kind, name, list(exc.causes)) from exc
        async with self._lock:
            stored = await self.get(namespace, name)
            expected = meta.get("resourceVersion")
            if expected and expected != stored["metadata"].get("resourceVersion"):
                raise Conflict(self.kind, name, f"Operation cannot be fulfilled on "
                               f'{self.kind.lower()}s "{name}": the object has been '
                               "modified; please apply your changes to the latest version "
                               "and try again")
            _check_immutable(self.kind, name, stored, new)
            kept = {k: v for k, v in stored["metadata"].items() if k in _SYSTEM_METADATA}
            given = {k: v for k, v in new["metadata"].items() if k not in _SYSTEM_METADATA}
            updated = dict(stored, metadata={**kept, **given}, spec=new["spec"])
            if updated["spec"] != stored["spec"]:
                updated["metadata"]["generation"] = int(kept.get("generation") or 1) + 1
            if updated != stored:
                stored = await self._db.put(updated)
        self._wake()
        return stored

    async def set_status(self, obj: Object, status: Object) -> None:
        """Write a reconciler's ``status`` over the object as stored now, if it is still
        the same object (uid) and the status changed. The caller holds the lock."""
        meta = obj["metadata"]
        stored = await self._db.get(self.kind, meta["namespace"], meta["name"])
        if stored is None or stored["metadata"]["uid"] != meta["uid"]:
            return
        if stored.get("status") != status:
            await self._db.put(dict(stored, status=status))

    async def delete(self, namespace: str, name: str) -> Object:
        """Forget the object (its dependents are the caller's). The caller holds the lock."""
        obj = await self.get(namespace, name)
        await self._db.delete(self.kind, namespace, name)
        self._wake()
        return obj


def _check_immutable(kind: str, name: str, stored: Object, new: Object) -> None:
    """A StatefulSet's selector and claim templates cannot change (as in Kubernetes);
    a controller's selector may."""
    if kind == REPLICATION_CONTROLLER:
        return
    for key in ("selector", "volumeClaimTemplates", "serviceName", "podManagementPolicy"):
        if stored["spec"].get(key) != new["spec"].get(key):
            raise Invalid(kind, name, [("spec", "Forbidden: updates to statefulset spec for "
                                        "fields other than 'replicas', 'ordinals', 'template', "
                                        "'updateStrategy', "
                                        "'persistentVolumeClaimRetentionPolicy' and "
                                        "'minReadySeconds' are forbidden")])
