"""What the reconcilers need of the rest of volfs: the pods (the lifecycle's pod
manager) and the claims (the storage controller), as named interfaces."""

from __future__ import annotations

from typing import Any, Protocol

from volfs.api import PersistentVolumeClaim, Pod
from volfs.state import AsyncStateDB
from volfs.state.events import NORMAL, WARNING, record_event

Object = dict[str, Any]
POD = "Pod"


class Pods(Protocol):
    """The pod manager (volfs.lifecycle.pods.PodManager)."""

    async def create_pod(self, pod: Pod) -> Object: ...

    async def delete_pod(self, namespace: str, name: str,
                         grace_seconds: float | None = None) -> Any: ...

    async def update_pod(self, obj: Object) -> Object: ...

    async def claim_users(self, namespace: str, claim_name: str) -> list[str]: ...


class Claims(Protocol):
    """The storage controller (volfs.controllers.storage.StorageController)."""

    async def create_claim(self, pvc: PersistentVolumeClaim) -> Object: ...

    async def delete_claim(self, namespace: str, name: str,
                           in_use_by: list[str] | None = None) -> Object: ...

    async def list_claims(self, namespace: str | None = None) -> list[Object]: ...


class Parts:
    """The database, the pods and the claims, as one reconciler sees them."""

    def __init__(self, db: AsyncStateDB, pods: Pods, claims: Claims) -> None:
        self.db = db
        self.pods = pods
        self.claims = claims

    async def pods_of(self, namespace: str) -> list[Object]:
        """The stored pods of ``namespace`` (without their live status: no engine call)."""
        return await self.db.list(POD, namespace)

    async def event(self, obj: Object, reason: str, message: str,
                    warning: bool = False) -> None:
        await record_event(self.db, obj, reason, message, WARNING if warning else NORMAL)


class CreateFailed(Exception):
    """A replica could not be made (an invalid template for this host, a volume that
    cannot be set up): ``str()`` says why; the reconciler tries again later."""
