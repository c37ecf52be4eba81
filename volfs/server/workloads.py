"""ReplicationControllers and StatefulSets as ResourceServices over the workload controller.

Thin adapters: the store checks and keeps the objects; deletes go through the
controller, which handles the pods as the request's ``propagationPolicy`` says.
"""

from __future__ import annotations

from typing import Any

from volfs.api.legacy import parse_replication_controller
from volfs.workloads import Workloads, WorkloadStore

Object = dict[str, Any]
DEFAULT_NAMESPACE = "default"


class WorkloadResource:
    """One workload kind: create, get, list, update, delete (propagating), scale."""

    def __init__(self, workloads: Workloads, store: WorkloadStore) -> None:
        self._workloads = workloads
        self._store = store

    async def create(self, obj: Object) -> Object:
        return await self._store.create(obj)

    async def get(self, namespace: str | None, name: str) -> Object:
        return await self._store.get(namespace or DEFAULT_NAMESPACE, name)

    async def list(self, namespace: str | None) -> list[Object]:
        return await self._store.list(namespace)

    async def update(self, obj: Object) -> Object:
        return await self._store.update(obj)

    async def delete(self, namespace: str | None, name: str) -> Object:
        return await self.delete_propagating(namespace, name, None)

    async def delete_propagating(self, namespace: str | None, name: str,
                                 policy: str | None) -> Object:
        return await self._workloads.delete(self._store, namespace or DEFAULT_NAMESPACE, name,
                                            policy)

    async def scale(self, namespace: str | None, name: str, replicas: int,
                    resource_version: str | None) -> Object:
        stored = await self.get(namespace, name)
        meta = dict(stored["metadata"])
        if resource_version:
            meta["resourceVersion"] = resource_version
        else:
            meta.pop("resourceVersion", None)
        return await self._store.update(dict(stored, metadata=meta,
                                             spec=dict(stored["spec"], replicas=replicas)))


class LegacyControllerResource:
    """The 2015 ``v1beta1`` ReplicationController (``/api/v1beta1``), so that the seed's
    file applies with kubectl as it does with volfs: a create is translated into the v1
    controller (``volfs.api.legacy``) and stored as v1; reads answer the v1 object."""

    def __init__(self, workloads: Workloads) -> None:
        self._v1 = WorkloadResource(workloads, workloads.controllers)

    async def create(self, obj: Object) -> Object:
        return await self._v1.create(_v1(obj))

    async def get(self, namespace: str | None, name: str) -> Object:
        return await self._v1.get(namespace, name)

    async def list(self, namespace: str | None) -> list[Object]:
        return await self._v1.list(namespace)

    async def update(self, obj: Object) -> Object:
        return await self._v1.update(_v1(obj))

    async def delete(self, namespace: str | None, name: str) -> Object:
        return await self._v1.delete(namespace, name)

    async def delete_propagating(self, namespace: str | None, name: str,
                                 policy: str | None) -> Object:
        return await self._v1.delete_propagating(namespace, name, policy)


def _v1(obj: Object) -> Object:
    """A v1beta1 body as v1 (the path's namespace, which the server put in ``metadata``,
    is the legacy ``namespace`` field); a v1-shaped body (a read-modify-write of what
    ``get`` answered) as it is."""
    if "desiredState" not in obj:
        return dict(obj, apiVersion="v1")
    legacy = {k: v for k, v in obj.items() if k != "metadata"}
    legacy.setdefault("namespace", (obj.get("metadata") or {}).get("namespace"))
    return parse_replication_controller(legacy, None).to_k8s()
