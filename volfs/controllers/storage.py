"""The storage controller: PVs, claims and classes; binding, provisioning, reclaim.

Its parts, each in its own module: this one handles the objects (create, read,
update, delete, with Kubernetes' immutability rules) and runs the loop;
:mod:`~volfs.controllers.binder` binds claims, :mod:`~volfs.controllers.provisioning`
makes PVs through the class's plugin, :mod:`~volfs.controllers.reclaimer` deals with
released PVs; :mod:`~volfs.controllers.world` is what they share.

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
import logging
from collections.abc import Callable
from typing import Any, Protocol

import trio

from volfs.api import ManifestError
from volfs.api.errors import AlreadyExists, Conflict, Invalid, NotFound, VolumeNotReady, quote
from volfs.api.storage import (
    NO_PROVISIONER,
    PV_SOURCES,
    PersistentVolume,
    PersistentVolumeClaim,
    StorageClass,
    build_claim,
    build_storage_class,
    build_volume,
    claims_of,
)
from volfs.controllers.binder import Binder
from volfs.controllers.provisioning import Provisioning
from volfs.controllers.reclaimer import Reclaimer
from volfs.controllers.world import (
    POD,
    PV,
    PVC,
    SC,
    EventSink,
    Object,
    World,
    as_claim,
    as_volume,
    new_object,
)
from volfs.logs import unexpected
from volfs.persistent import PersistentSources
from volfs.state import AsyncStateDB

log = logging.getLogger(__name__)


class ClaimConsumers(Protocol):
    """Who waits for claims to bind (the pod manager: pods Pending on a claim)."""

    async def claims_bound(self) -> None:
        """Told after a pass that bound one or more claims."""
        ...


class StorageController:
    """The storage objects (create, read, update, delete) and the loop that keeps them
    true: each pass binds (:class:`Binder`, which provisions through
    :class:`Provisioning`) and reclaims (:class:`Reclaimer`)."""

    def __init__(self, db: AsyncStateDB, sources: PersistentSources,
                 events: EventSink) -> None:
        self._db = db
        self._sources = sources
        self._binder = Binder(db, Provisioning(sources, events), events)
        self._reclaimer = Reclaimer(db, sources, events)
        self._consumers: list[ClaimConsumers] = []
        self._lock = trio.Lock()
        self._wake = trio.Event()

    def _check_served(self, pv: PersistentVolume) -> None:
        """Invalid unless a PV-source plugin serves the volume's kind."""
        kind = pv.spec.source_kind()
        if kind is not None and kind not in self._sources.kinds():
            raise Invalid(PV, pv.metadata.name, [(
                f"spec.{kind}", f"volume source {kind} is not supported (volfs serves "
                                f"{', '.join(self._sources.kinds())})")])

    def _check_provisioner(self, sc: StorageClass) -> None:
        """Invalid unless a plugin answers the class's provisioner and takes its parameters
        (``kubernetes.io/no-provisioner`` needs none: its PVs are made by hand)."""
        if sc.provisioner == NO_PROVISIONER:
            return
        provisioner = self._sources.provisioner(sc.provisioner)
        if provisioner is None:
            supported = [*self._sources.provisioners(), NO_PROVISIONER]
            raise Invalid(SC, sc.metadata.name, [(
                "provisioner", f"Unsupported value: {quote(sc.provisioner)}: supported "
                               f"values: {', '.join(map(quote, supported))}")])
        causes = provisioner.check_class(sc)
        if causes:
            raise Invalid(SC, sc.metadata.name, causes)

    def tell_when_bound(self, consumers: ClaimConsumers) -> None:
        """Have ``consumers.claims_bound()`` called after each pass that binds a claim."""
        self._consumers.append(consumers)

    # -- PersistentVolumes ----------------------------------------------------------

    async def create_volume(self, pv: PersistentVolume) -> Object:
        self._check_served(pv)
        async with self._lock:
            if await self._db.get(PV, "", pv.metadata.name):
                raise AlreadyExists(PV, None, pv.metadata.name)
            obj = new_object(pv.to_k8s(), {"phase": "Available"})
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

    def volume_operation(self, name: str) -> Object | None:
        """The reclaim under way on the PV (its ``status.operation``), or None."""
        progress = self._reclaimer.operation(name)
        return progress.as_status() if progress is not None else None

    # -- PersistentVolumeClaims -----------------------------------------------------

    async def create_claim(self, pvc: PersistentVolumeClaim) -> Object:
        async with self._lock:
            ns, name = pvc.metadata.namespace, pvc.metadata.name
            if await self._db.get(PVC, ns, name):
                raise AlreadyExists(PVC, ns, name)
            await self._db.put(new_object(pvc.to_k8s(), {"phase": "Pending"}))
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
        self._check_provisioner(sc)
        async with self._lock:
            if await self._db.get(SC, "", sc.metadata.name):
                raise AlreadyExists(SC, None, sc.metadata.name)
            await self._db.put(new_object(sc.to_k8s(), None))
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
        return as_claim(claim_obj), as_volume(pv_obj)

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
            except Exception:  # a bug: its traceback once, not every interval
                unexpected(log, "storage sync failed; retrying in %gs", interval)
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
                bound_any |= await self._binder.sync_claim(world, world.claims[key])
            for name in sorted(world.volumes):
                await self._reclaimer.sync_volume(world, world.volumes[name])
        if bound_any:
            for consumers in self._consumers:
                await consumers.claims_bound()

    async def _read_world(self) -> World:
        return World(
            volumes={o["metadata"]["name"]: o for o in await self._db.list(PV)},
            claims={(o["metadata"]["namespace"], o["metadata"]["name"]): o
                    for o in await self._db.list(PVC)},
            classes={o["metadata"]["name"]: o for o in await self._db.list(SC)},
            consumers={(o["metadata"]["namespace"], claim)
                       for o in await self._db.list(POD) for claim in claims_of(o)},
        )

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


