"""PersistentVolumes, claims and StorageClasses as ResourceServices over the controller.

Thin adapters: parse the request body into the kind's model (a ManifestError is a
422), call the storage controller, and add what only the running daemon knows (a
claim's live usage, the pods that use it, a volume's reclaim under way).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from volfs.api.storage import build_claim, build_storage_class, build_volume
from volfs.controllers.storage import StorageController

Object = dict[str, Any]
DEFAULT_NAMESPACE = "default"


class VolumeResource:
    def __init__(self, controller: StorageController,
                 used_bytes: Callable[[str], int | None]) -> None:
        self._controller = controller
        self._used_bytes = used_bytes

    async def create(self, obj: Object) -> Object:
        return self._live(await self._controller.create_volume(build_volume(obj, None)))

    async def get(self, namespace: str | None, name: str) -> Object:
        return self._live(await self._controller.get_volume(name))

    async def list(self, namespace: str | None) -> list[Object]:
        return [self._live(o) for o in await self._controller.list_volumes()]

    async def delete(self, namespace: str | None, name: str) -> Object:
        return await self._controller.delete_volume(name)

    async def update(self, obj: Object) -> Object:
        return self._live(await self._controller.update_volume(obj))

    def _live(self, obj: Object) -> Object:
        """With its usage and the reclaim under way, if any (``status.operation``)."""
        name = obj["metadata"]["name"]
        live = {"usedBytes": self._used_bytes(name),
                "operation": self._controller.volume_operation(name)}
        live = {key: value for key, value in live.items() if value is not None}
        if not live:
            return obj
        return dict(obj, status=dict(obj.get("status") or {}, **live))


class ClaimResource:
    def __init__(self, controller: StorageController,
                 used_bytes: Callable[[str], int | None],
                 users: Callable[[str, str], Awaitable[list[str]]]) -> None:
        self._controller = controller
        self._used_bytes = used_bytes
        self._users = users

    async def create(self, obj: Object) -> Object:
        return self._live(await self._controller.create_claim(build_claim(obj, None)))

    async def get(self, namespace: str | None, name: str) -> Object:
        return self._live(await self._controller.get_claim(namespace or DEFAULT_NAMESPACE, name))

    async def list(self, namespace: str | None) -> list[Object]:
        return [self._live(o) for o in await self._controller.list_claims(namespace)]

    async def delete(self, namespace: str | None, name: str) -> Object:
        namespace = namespace or DEFAULT_NAMESPACE
        return await self._controller.delete_claim(namespace, name,
                                                   await self._users(namespace, name))

    async def update(self, obj: Object) -> Object:
        return self._live(await self._controller.update_claim(obj))

    def _live(self, obj: Object) -> Object:
        """The claim with ``status.usedBytes`` while some pod serves its volume."""
        volume = (obj.get("spec") or {}).get("volumeName")
        used = self._used_bytes(volume) if volume else None
        if used is None:
            return obj
        return dict(obj, status=dict(obj.get("status") or {}, usedBytes=used))


class ClassResource:
    def __init__(self, controller: StorageController) -> None:
        self._controller = controller

    async def create(self, obj: Object) -> Object:
        return await self._controller.create_class(build_storage_class(obj, None))

    async def get(self, namespace: str | None, name: str) -> Object:
        return await self._controller.get_class(name)

    async def list(self, namespace: str | None) -> list[Object]:
        return await self._controller.list_classes()

    async def delete(self, namespace: str | None, name: str) -> Object:
        return await self._controller.delete_class(name)

    async def update(self, obj: Object) -> Object:
        return await self._controller.update_class(obj)
