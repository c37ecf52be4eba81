"""ReplicationControllers and StatefulSets as ResourceServices over the workload controller.

Thin adapters: the store checks and keeps the objects; deletes go through the
controller, which handles the pods as the request's ``propagationPolicy`` says.
"""

from __future__ import annotations

from typing import Any

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
