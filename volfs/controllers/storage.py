"""The storage controller: PVs, claims and classes; binding, provisioning, reclaim.

Every change request (create or delete of a PV, claim or class) is stored and then
followed at once by :meth:`StorageController.sync`, one pass of the PV controller's
loop: bind what can be bound, provision what a class can make, reclaim what was
released. A periodic sync retries what failed (an NFS server that was down). Each
step is idempotent and each binding is one transaction (PV and claim together), so
a restart at any point resumes where it left off.

Shapes and wording follow kube-controller-manager: PV phases Available / Bound /
Released / Failed, claim phases Pending / Bound / Lost, a Released PV keeps its
claimRef (with the uid) until an admin clears it.
"""

from __future__ import annotations

import copy
import datetime
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import trio

from volfs.api import ManifestError
from volfs.api.errors import AlreadyExists, Conflict, Invalid, NotFound, VolumeNotReady
from volfs.api.storage import (
    PV_SOURCES,
    PersistentVolume,
    PersistentVolumeClaim,
    StorageClass,
    build_claim,
    build_storage_class,
    build_volume,
    claims_of,
)
from volfs.controllers.matching import effective_class, find_match, why_pending
from volfs.persistent import PROVISIONED_BY, PersistentSources, ReclaimFailed
from volfs.state import AsyncStateDB

log = logging.getLogger(__name__)

PV, PVC, SC = "PersistentVolume", "PersistentVolumeClaim", "StorageClass"
POD = "Pod"  # read only: which claims have a consumer (WaitForFirstConsumer)
WAIT_FOR_FIRST_CONSUMER = "WaitForFirstConsumer"
Object = dict[str, Any]

BOUND_BY_CONTROLLER = "pv.kubernetes.io/bound-by-controller"


class EventSink(Protocol):
    """Where the controller reports what it did (``volfs.state.events.EventRecorder``)."""

    async def record(self, involved_object: Object, type_: str, reason: str,
                     message: str) -> None: ...


class ClaimConsumers(Protocol):
    """Who waits for claims to bind (the pod manager: pods Pending on a claim)."""

    async def claims_bound(self) -> None:
        """Told after a pass that bound one or more claims."""
        ...


@dataclass
class _World:
    """One consistent read of every storage object, for one sync pass."""

    volumes: dict[str, Object]
    claims: dict[tuple[str, str], Object]
    classes: dict[str, Object]
    consumers: set[tuple[str, str]]  # (namespace, claim name) some pod's volume names

    def class_models(self) -> list[StorageClass]:
        return [_as_class(o) for o in self.classes.values()]


class StorageController:
    def __init__(self, db: AsyncStateDB, sources: PersistentSources,
                 events: EventSink) -> None:
        self._db = db
        self._sources = sources
        self._record = events.record
        self._consumers: list[ClaimConsumers] = []
        self._lock = trio.Lock()
        self._last_reason: dict[str, str] = {}  # claim uid -> last Pending message recorded
        self._wake = trio.Event()

    def tell_when_bound(self, consumers: ClaimConsumers) -> None:
        """Have ``consumers.claims_bound()`` called after each pass that binds a claim."""
        self._consumers.append(consumers)

    # -- PersistentVolumes ----------------------------------------------------------

    async def create_volume(self, pv: PersistentVolume) -> Object:
        async with self._lock:
            if await self._db.get(PV, "", pv.metadata.name):
                raise AlreadyExists(PV, None, pv.metadata.name)
            obj = _new_object(pv.to_k8s(), {"phase": "Available"})
            await self._db.put(obj)
        await self.sync()
        return await self.get_volume(pv.metadata.name)

    async def delete_volume(self, name: str) -> Object:
        async with self._lock:
            obj = await self._get(PV, "", name)
            await self._db.delete(PV, "", name)
        await self.sync()  # its claim, if any, is Lost now
        return obj

    async def get_volume(self, name: str) -> Object:
        return await self._get(PV, "", name)

    async def list_volumes(self) -> list[Object]:
        return await self._db.list(PV)

    # -- PersistentVolumeClaims -----------------------------------------------------

    async def create_claim(self, pvc: PersistentVolumeClaim) -> Object:
        async with self._lock:
            ns, name = pvc.metadata.namespace, pvc.metadata.name
            if await self._db.get(PVC, ns, name):
                raise AlreadyExists(PVC, ns, name)
            await self._db.put(_new_object(pvc.to_k8s(), {"phase": "Pending"}))
        await self.sync()
        return await self.get_claim(ns, name)

    async def delete_claim(self, namespace: str, name: str,
                           in_use_by: list[str] | None = None) -> Object:
        """Delete a claim; its PV is then reclaimed as its policy says.

        ``in_use_by`` names pods that use the claim: deleting it then is refused,
        as Kubernetes' pvc-protection keeps a used claim alive.
        """
        if in_use_by:
            raise Conflict(PVC, name, f'persistentvolumeclaim "{name}" is in use by pod '
                           f'{", ".join(in_use_by)}; delete the pod first')
        async with self._lock:
            obj = await self._get(PVC, namespace, name)
            await self._db.delete(PVC, namespace, name)
        await self.sync()
        return obj

    async def get_claim(self, namespace: str, name: str) -> Object:
        return await self._get(PVC, namespace, name)

    async def list_claims(self, namespace: str | None = None) -> list[Object]:
        return await self._db.list(PVC, namespace)

    # -- StorageClasses ----------------------------------------------------------------

    async def create_class(self, sc: StorageClass) -> Object:
        async with self._lock:
            if await self._db.get(SC, "", sc.metadata.name):
                raise AlreadyExists(SC, None, sc.metadata.name)
            await self._db.put(_new_object(sc.to_k8s(), None))
        await self.sync()  # Pending claims of this class can be provisioned now
        return await self._get(SC, "", sc.metadata.name)

    async def delete_class(self, name: str) -> Object:
        async with self._lock:
            obj = await self._get(SC, "", name)
            await self._db.delete(SC, "", name)
            return obj

    async def get_class(self, name: str) -> Object:
        return await self._get(SC, "", name)

    async def list_classes(self) -> list[Object]:
        return await self._db.list(SC)

    # -- for pods ---------------------------------------------------------------------------

    async def bound_volume(self, namespace: str, claim_name: str
                           ) -> tuple[PersistentVolumeClaim, PersistentVolume]:
        """The claim and the PV it is bound to; VolumeNotReady while there is none."""
        claim_obj = await self._db.get(PVC, namespace, claim_name)
        if claim_obj is None:
            raise VolumeNotReady(f'persistentvolumeclaim "{claim_name}" not found')
        phase = claim_obj.get("status", {}).get("phase")
        pv_obj = await self._db.get(PV, "", claim_obj["spec"].get("volumeName") or "")
        if phase != "Bound" or pv_obj is None:
            raise VolumeNotReady(f'persistentvolumeclaim "{claim_name}" is {phase or "Pending"}'
                                 " (not bound to a volume yet)")
        return _as_claim(claim_obj), _as_volume(pv_obj)

    # -- updates (PUT, and PATCH once the server has applied the patch) ----------------------

    async def update_volume(self, obj: Object) -> Object:
        """Labels, annotations and most of the spec may change; the nfs source may not.

        Clearing ``spec.claimRef`` of a Released volume makes it Available again, the
        way an admin recycles a volume by hand in Kubernetes.
        """
        async with self._lock:
            name = obj["metadata"]["name"]
            stored = await self._get(PV, "", name)
            _check_version(PV, obj, stored)
            pv = _parse_update(build_volume, PV, obj)
            new = pv.to_k8s()
            if _sources_of(new) != _sources_of(stored):
                raise Invalid(PV, name, [("spec.persistentvolumesource",
                                          "Forbidden: spec.persistentvolumesource is immutable "
                                          "after creation")])
            updated = _keep_system_fields(new, stored)
            if "claimRef" not in new["spec"] and stored["status"].get("phase") == "Released":
                updated["status"] = {"phase": "Available"}
            await self._db.put(updated)
        await self.sync()
        return await self.get_volume(name)

    async def update_claim(self, obj: Object) -> Object:
        """Labels and annotations may change; the spec may not (volfs does not resize)."""
        async with self._lock:
            meta = obj["metadata"]
            stored = await self._get(PVC, meta.get("namespace") or "default", meta["name"])
            _check_version(PVC, obj, stored)
            new = _parse_update(build_claim, PVC, obj).to_k8s()
            if _spec_without_binding(new) != _spec_without_binding(stored):
                raise Invalid(PVC, meta["name"], [("spec", (
                    "Forbidden: spec is immutable after creation except "
                    "resources.requests and volumeAttributesClassName for bound claims"))])
            updated = _keep_system_fields(new, stored)
            updated["spec"] = stored["spec"]
            await self._db.put(updated)
            return updated

    async def update_class(self, obj: Object) -> Object:
        """Labels and annotations (the default-class one included) may change."""
        async with self._lock:
            name = obj["metadata"]["name"]
            stored = await self._get(SC, "", name)
            _check_version(SC, obj, stored)
            new = _parse_update(build_storage_class, SC, obj).to_k8s()
            for key in ("provisioner", "parameters", "reclaimPolicy", "volumeBindingMode"):
                if new.get(key) != stored.get(key):
                    raise Invalid(SC, name, [(key, f"Forbidden: updates to {key} are "
                                                   "forbidden.")])
            updated = _keep_system_fields(new, stored)
            await self._db.put(updated)
        await self.sync()  # a new default class may provision Pending claims
        return await self.get_class(name)

    # -- the loop -------------------------------------------------------------------------

    async def run(self, interval: float = 5.0, *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Sync now and every ``interval`` seconds (retries what failed)."""
        task_status.started()
        while True:
            try:
                await self.sync()
            except Exception:
                log.exception("storage sync failed; retrying in %gs", interval)
            with trio.move_on_after(interval):
                await self._wake.wait()
            self._wake = trio.Event()

    def wake(self) -> None:
        """Sync soon, not at the next interval: a pod now waits for a claim (its first
        consumer, for a WaitForFirstConsumer class)."""
        self._wake.set()

    async def sync(self) -> None:
        """One pass: bind, provision, reclaim, mark lost claims. Idempotent."""
        async with self._lock:
            world = await self._read_world()
            bound_any = False
            for key in sorted(world.claims):
                bound_any |= await self._sync_claim(world, world.claims[key])
            for name in sorted(world.volumes):
                await self._sync_volume(world, world.volumes[name])
        if bound_any:
            for consumers in self._consumers:
                await consumers.claims_bound()

    async def _read_world(self) -> _World:
        return _World(
            volumes={o["metadata"]["name"]: o for o in await self._db.list(PV)},
            claims={(o["metadata"]["namespace"], o["metadata"]["name"]): o
                    for o in await self._db.list(PVC)},
            classes={o["metadata"]["name"]: o for o in await self._db.list(SC)},
            consumers={(o["metadata"]["namespace"], claim)
                       for o in await self._db.list(POD) for claim in claims_of(o)},
        )

    async def _sync_claim(self, world: _World, claim_obj: Object) -> bool:
        """Bind (or provision for) a Pending claim; mark a Bound one Lost if its PV is gone."""
        claim = _as_claim(claim_obj)
        phase = claim_obj.get("status", {}).get("phase")
        if phase in ("Bound", "Lost"):
            if phase == "Bound" and claim.spec.volume_name not in world.volumes:
                await self._mark_lost(claim_obj)
            return False
        classes = world.class_models()
        claim_class = effective_class(claim, classes)
        if self._waits_for_consumer(world, claim, claim_class):
            await self._note_pending(claim_obj, "Normal", WAIT_FOR_FIRST_CONSUMER,
                                     "waiting for first consumer to be created before binding")
            return False
        candidates = [(_as_volume(o), o["status"].get("phase", "Available"))
                      for o in world.volumes.values()]
        match = find_match(claim, candidates, claim_class)
        if match is None:
            match_obj = await self._provision(world, claim, claim_class)
        else:
            match_obj = world.volumes[match.metadata.name]
        if match_obj is None:
            await self._pending(claim_obj, claim, claim_class, classes)
            return False
        await self._bind(world, match_obj, claim_obj)
        return True

    @staticmethod
    def _waits_for_consumer(world: _World, claim: PersistentVolumeClaim,
                            claim_class: str) -> bool:
        """Kubernetes' delayed binding: a claim of a WaitForFirstConsumer class is neither
        bound nor provisioned until a pod uses it (unless it names its volume)."""
        sc_obj = world.classes.get(claim_class)
        if sc_obj is None or claim.spec.volume_name:
            return False
        return (_as_class(sc_obj).volume_binding_mode == WAIT_FOR_FIRST_CONSUMER
                and (claim.metadata.namespace, claim.metadata.name) not in world.consumers)

    async def _pending(self, claim_obj: Object, claim: PersistentVolumeClaim,
                       claim_class: str, classes: list[StorageClass]) -> None:
        reason, message = why_pending(claim, claim_class, classes)
        await self._note_pending(claim_obj, "Warning" if reason != "FailedBinding" else "Normal",
                                 reason, message)

    async def _note_pending(self, claim_obj: Object, type_: str, reason: str,
                            message: str) -> None:
        uid = claim_obj["metadata"]["uid"]
        if self._last_reason.get(uid) != message:  # one event per change, not per pass
            self._last_reason[uid] = message
            await self._record(claim_obj, type_, reason, message)

    async def _bind(self, world: _World, pv_obj: Object, claim_obj: Object) -> None:
        meta = claim_obj["metadata"]
        pv_obj["spec"]["claimRef"] = {
            "kind": PVC, "apiVersion": "v1", "namespace": meta["namespace"],
            "name": meta["name"], "uid": meta["uid"]}
        pv_obj["status"] = {"phase": "Bound"}
        claim_obj["spec"]["volumeName"] = pv_obj["metadata"]["name"]
        if claim_obj["spec"].get("storageClassName") is None:
            claim_obj["spec"]["storageClassName"] = pv_obj["spec"].get("storageClassName", "")
        claim_obj["metadata"].setdefault("annotations", {})[BOUND_BY_CONTROLLER] = "yes"
        claim_obj["status"] = {"phase": "Bound",
                               "accessModes": pv_obj["spec"]["accessModes"],
                               "capacity": pv_obj["spec"]["capacity"]}
        await self._db.write([pv_obj, claim_obj], [])
        world.volumes[pv_obj["metadata"]["name"]] = pv_obj
        self._last_reason.pop(meta["uid"], None)
        await self._record(claim_obj, "Normal", "Bound",
                           f"Successfully bound to volume {pv_obj['metadata']['name']}")

    async def _mark_lost(self, claim_obj: Object) -> None:
        claim_obj["status"] = dict(claim_obj.get("status", {}), phase="Lost")
        await self._db.put(claim_obj)
        await self._record(claim_obj, "Warning", "ClaimLost",
                           "Bound claim has lost its PersistentVolume. Data on the volume "
                           "is lost!")

    # -- provisioning -------------------------------------------------------------------

    async def _provision(self, world: _World, claim: PersistentVolumeClaim,
                         claim_class: str) -> Object | None:
        """A new PV for ``claim`` from its class's provisioner plugin, or None."""
        sc_obj = world.classes.get(claim_class)
        if sc_obj is None or claim.spec.selector is not None:
            return None
        sc = _as_class(sc_obj)
        provisioner = self._sources.provisioner(sc.provisioner)
        if provisioner is None:
            return None
        pv_name = f"pvc-{claim.metadata.uid}"
        try:
            made = await provisioner.provision(claim, sc, pv_name)
        except (OSError, ValueError) as exc:
            await self._record(_claim_ref_obj(claim), "Warning", "ProvisioningFailed",
                               f"failed to provision volume with StorageClass "
                               f'"{claim_class}": {exc}')
            return None
        pv = {
            "apiVersion": "v1", "kind": PV,
            "metadata": {"name": pv_name, "annotations": {
                PROVISIONED_BY: sc.provisioner, **made.annotations}},
            "spec": {"capacity": {"storage": claim.spec.resources.requests["storage"]},
                     "accessModes": list(claim.spec.access_modes),
                     "persistentVolumeReclaimPolicy": sc.reclaim_policy,
                     "storageClassName": claim_class, **made.spec},
        }
        obj = _new_object(build_volume(pv, None).to_k8s(), {"phase": "Available"})
        await self._record(_claim_ref_obj(claim), "Normal", "ProvisioningSucceeded",
                           f"Successfully provisioned volume {pv_name}")
        return obj

    # -- reclaim -------------------------------------------------------------------------

    async def _sync_volume(self, world: _World, pv_obj: Object) -> None:
        """A Bound PV whose claim is gone is Released, then reclaimed by its policy."""
        ref = pv_obj["spec"].get("claimRef")
        phase = pv_obj.get("status", {}).get("phase")
        if ref is None or phase not in ("Bound", "Released"):
            return
        claim_obj = world.claims.get((ref.get("namespace", "default"), ref["name"]))
        if claim_obj is not None and claim_obj["metadata"]["uid"] == ref.get("uid"):
            return  # still bound to a live claim
        if claim_obj is not None and ref.get("uid") is None:
            return  # pre-bound to a claim that does not exist yet: wait for it
        if phase == "Bound":
            pv_obj["status"] = {"phase": "Released"}
            await self._db.put(pv_obj)
        policy = pv_obj["spec"].get("persistentVolumeReclaimPolicy", "Retain")
        if policy == "Delete":
            await self._reclaim_delete(pv_obj)
        elif policy == "Recycle":
            await self._reclaim_recycle(pv_obj)

    async def _reclaim_delete(self, pv_obj: Object) -> None:
        name = pv_obj["metadata"]["name"]
        deleter = self._sources.deleter(pv_obj)
        if deleter is None:
            await self._fail(pv_obj, "VolumeFailedDelete",
                             "error getting deleter volume plugin for volume "
                             f'"{name}": no deletable volume plugin matched')
            return
        try:
            await deleter.delete(pv_obj)
        except ReclaimFailed as exc:
            await self._fail(pv_obj, "VolumeFailedDelete", str(exc))
            return
        await self._db.delete(PV, "", name)

    async def _reclaim_recycle(self, pv_obj: Object) -> None:
        recycler = self._sources.recycler(pv_obj)
        if recycler is None:
            await self._fail(pv_obj, "VolumeFailedRecycle",
                             "no recyclable volume plugin matched")
            return
        try:
            done = await recycler.recycle(pv_obj)
        except ReclaimFailed as exc:
            await self._fail(pv_obj, "VolumeFailedRecycle", f"recycle failed: {exc}")
            return
        pv_obj["spec"].pop("claimRef", None)
        pv_obj["status"] = {"phase": "Available"}
        await self._db.put(pv_obj)
        await self._record(pv_obj, "Normal", "VolumeRecycled", f"Volume recycled: {done}")

    async def _fail(self, pv_obj: Object, reason: str, message: str) -> None:
        if pv_obj.get("status", {}).get("phase") == "Failed":
            return
        pv_obj["status"] = {"phase": "Failed", "reason": reason, "message": message}
        await self._db.put(pv_obj)
        await self._record(pv_obj, "Warning", reason, message)

    async def _get(self, kind: str, namespace: str, name: str) -> Object:
        obj = await self._db.get(kind, namespace, name)
        if obj is None:
            raise NotFound(kind, namespace or None, name)
        return obj


_SYSTEM_METADATA = ("uid", "creationTimestamp", "resourceVersion", "namespace")


def _check_version(kind: str, obj: Object, stored: Object) -> None:
    expected = obj["metadata"].get("resourceVersion")
    if expected and expected != stored["metadata"].get("resourceVersion"):
        name = stored["metadata"]["name"]
        raise Conflict(kind, name, f'Operation cannot be fulfilled on {kind.lower()}s "{name}": '
                       "the object has been modified; please apply your changes to the latest "
                       "version and try again")


def _parse_update(build: Callable[[Object, str | None], Any], kind: str, obj: Object) -> Any:
    try:
        return build(obj, None)
    except ManifestError as exc:
        raise Invalid(kind, obj["metadata"].get("name", ""), list(exc.causes)) from exc


def _keep_system_fields(new: Object, stored: Object) -> Object:
    """``new`` with what clients may not set (identity, status) kept from ``stored``."""
    meta = dict(new["metadata"])
    for key in _SYSTEM_METADATA:
        if key in stored["metadata"]:
            meta[key] = stored["metadata"][key]
    updated = dict(new, metadata=meta)
    if "status" in stored:
        updated["status"] = stored["status"]
    return updated


def _sources_of(pv_obj: Object) -> Object:
    """A PV's source fields (``nfs``, ...): immutable after creation, as in Kubernetes."""
    return {name: pv_obj["spec"].get(name) for name in PV_SOURCES}


def _spec_without_binding(obj: Object) -> Object:
    """A claim's spec minus what the binder fills in (volumeName, a defaulted class)."""
    spec = copy.deepcopy(obj["spec"])
    spec.pop("volumeName", None)
    spec.pop("storageClassName", None)
    spec.get("resources", {}).pop("limits", None)
    return spec


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _new_object(obj: Object, status: Object | None) -> Object:
    meta = obj.setdefault("metadata", {})
    meta.update(uid=str(uuid.uuid4()), creationTimestamp=_now())
    if status is not None:
        obj["status"] = status
    return obj


def _claim_ref_obj(claim: PersistentVolumeClaim) -> Object:
    return {"kind": PVC, "apiVersion": "v1",
            "metadata": {"namespace": claim.metadata.namespace, "name": claim.metadata.name,
                         "uid": claim.metadata.uid}}


def _stored(build: Callable[[Object, str | None], Any], obj: Object) -> Any:
    try:
        return build(obj, None)
    except ManifestError as exc:  # only a hand-edited database gets here
        raise ValueError(f"stored {obj.get('kind')} {obj['metadata'].get('name')}: {exc}") from exc


def _as_volume(obj: Object) -> PersistentVolume:
    pv: PersistentVolume = _stored(build_volume, obj)
    return pv


def _as_claim(obj: Object) -> PersistentVolumeClaim:
    pvc: PersistentVolumeClaim = _stored(build_claim, obj)
    return pvc


def _as_class(obj: Object) -> StorageClass:
    sc: StorageClass = _stored(build_storage_class, obj)
    return sc
