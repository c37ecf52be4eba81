"""What the storage controller's parts share: the kinds, one read of every storage
object (:class:`World`), where events go, and how stored objects become models."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from volfs.api import ManifestError
from volfs.api.storage import (
    PersistentVolume,
    PersistentVolumeClaim,
    StorageClass,
    build_claim,
    build_storage_class,
    build_volume,
)
from volfs.api.times import timestamp_now

PV, PVC, SC = "PersistentVolume", "PersistentVolumeClaim", "StorageClass"
POD = "Pod"  # read only: which claims have a consumer (WaitForFirstConsumer)
Object = dict[str, Any]


class EventSink(Protocol):
    """Where the controller reports what it did (``volfs.state.events.EventRecorder``)."""

    async def record(self, involved_object: Object, type_: str, reason: str,
                     message: str) -> None: ...


@dataclass
class World:
    """One consistent read of every storage object, for one sync pass."""

    volumes: dict[str, Object]
    claims: dict[tuple[str, str], Object]
    classes: dict[str, Object]
    consumers: set[tuple[str, str]]  # (namespace, claim name) some pod's volume names

    def class_models(self) -> list[StorageClass]:
        return [as_class(o) for o in self.classes.values()]


def new_object(obj: Object, status: Object | None) -> Object:
    """``obj`` as the API server stores a new object: a uid, a creation time, a status."""
    meta = obj.setdefault("metadata", {})
    meta.update(uid=str(uuid.uuid4()), creationTimestamp=timestamp_now())
    if status is not None:
        obj["status"] = status
    return obj


def claim_ref_obj(claim: PersistentVolumeClaim) -> Object:
    """Enough of a claim to record an event about it."""
    return {"kind": PVC, "apiVersion": "v1",
            "metadata": {"namespace": claim.metadata.namespace, "name": claim.metadata.name,
                         "uid": claim.metadata.uid}}


def _stored(build: Callable[[Object, str | None], Any], obj: Object) -> Any:
    try:
        return build(obj, None)
    except ManifestError as exc:  # only a hand-edited database gets here
        raise ValueError(f"stored {obj.get('kind')} {obj['metadata'].get('name')}: {exc}") from exc


def as_volume(obj: Object) -> PersistentVolume:
    pv: PersistentVolume = _stored(build_volume, obj)
    return pv


def as_claim(obj: Object) -> PersistentVolumeClaim:
    pvc: PersistentVolumeClaim = _stored(build_claim, obj)
    return pvc


def as_class(obj: Object) -> StorageClass:
    sc: StorageClass = _stored(build_storage_class, obj)
    return sc
