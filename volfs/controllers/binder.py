"""Binding: a Pending claim gets the PV that fits it best (or one made for it), a Bound
claim whose PV is gone is Lost. One claim at a time, within one pass of the loop.

As Kubernetes binds: a PV pre-bound by ``claimRef`` wins, else the smallest Available
PV of the claim's class that offers its access modes and matches its selector; a
claim of a ``WaitForFirstConsumer`` class waits until a pod uses it. Each binding is
one transaction (PV and claim together).
"""

from __future__ import annotations

import trio

from volfs.api.storage import PersistentVolumeClaim, StorageClass
from volfs.controllers.matching import effective_class, find_match, why_pending
from volfs.controllers.provisioning import Provisioning
from volfs.controllers.world import (
    PVC,
    EventSink,
    Object,
    World,
    as_claim,
    as_class,
    as_volume,
)
from volfs.metrics import BINDER_SYNCS
from volfs.state import AsyncStateDB

WAIT_FOR_FIRST_CONSUMER = "WaitForFirstConsumer"
BOUND_BY_CONTROLLER = "pv.kubernetes.io/bound-by-controller"


class Binder:
    def __init__(self, db: AsyncStateDB, provisioning: Provisioning, events: EventSink) -> None:
        self._db = db
        self._provisioning = provisioning
        self._record = events.record
        self._last_reason: dict[str, str] = {}  # claim uid -> last Pending message recorded

    async def sync_claim(self, world: World, claim_obj: Object) -> bool:
        """Bind (or provision for) a Pending claim; mark a Bound one Lost if its PV is gone.

        Each call is counted and timed by its outcome (volfs.metrics)."""
        started = trio.current_time()
        result = await self._sync_claim(world, claim_obj)
        BINDER_SYNCS.series(result).observe(trio.current_time() - started)
        return result == "bound"

    async def _sync_claim(self, world: World, claim_obj: Object) -> str:
        """What became of the claim: bound, pending, waiting, lost or unchanged."""
        claim = as_claim(claim_obj)
        phase = claim_obj.get("status", {}).get("phase")
        if phase in ("Bound", "Lost"):
            if phase == "Bound" and claim.spec.volume_name not in world.volumes:
                await self._mark_lost(claim_obj)
                return "lost"
            return "unchanged"
        classes = world.class_models()
        claim_class = effective_class(claim, classes)
        if self._waits_for_consumer(world, claim, claim_class):
            await self._note_pending(claim_obj, "Normal", WAIT_FOR_FIRST_CONSUMER,
                                     "waiting for first consumer to be created before binding")
            return "waiting"
        candidates = [(as_volume(o), o["status"].get("phase", "Available"))
                      for o in world.volumes.values()]
        match = find_match(claim, candidates, claim_class)
        if match is None:
            match_obj = await self._provisioning.provision(world, claim, claim_class)
        else:
            match_obj = world.volumes[match.metadata.name]
        if match_obj is None:
            await self._pending(claim_obj, claim, claim_class, classes)
            return "pending"
        await self._bind(world, match_obj, claim_obj)
        return "bound"

    @staticmethod
    def _waits_for_consumer(world: World, claim: PersistentVolumeClaim,
                            claim_class: str) -> bool:
        """Kubernetes' delayed binding: a claim of a WaitForFirstConsumer class is neither
        bound nor provisioned until a pod uses it (unless it names its volume)."""
        sc_obj = world.classes.get(claim_class)
        if sc_obj is None or claim.spec.volume_name:
            return False
        return (as_class(sc_obj).volume_binding_mode == WAIT_FOR_FIRST_CONSUMER
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

    async def _bind(self, world: World, pv_obj: Object, claim_obj: Object) -> None:
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
