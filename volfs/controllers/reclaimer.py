"""Reclaim: a Bound PV whose claim is gone is Released, then dealt with by its policy:
Retain keeps it (an admin clears its claimRef), Delete asks its kind's deleter
plugin, Recycle its recycler; a plugin that cannot is a Failed PV with kubelet's
words. Deleting and recycling can be long: each is announced by an event when it
starts (``Deleting``, ``Recycling``) and one when it ends (``Deleted``,
``VolumeRecycled``) with the count of entries removed and the time it took."""

from __future__ import annotations

import logging

import trio

from volfs.controllers.world import PV, EventSink, Object, World
from volfs.logs import fields, object_fields
from volfs.metrics import PROVISIONER_OPERATIONS
from volfs.persistent import PersistentSources, ReclaimFailed
from volfs.state import AsyncStateDB
from volfs.stores.progress import Progress

log = logging.getLogger(__name__)


class Reclaimer:
    def __init__(self, db: AsyncStateDB, sources: PersistentSources, events: EventSink) -> None:
        self._db = db
        self._sources = sources
        self._record = events.record
        self._under_way: dict[str, Progress] = {}  # PV name → its delete or recycle

    def operation(self, pv_name: str) -> Progress | None:
        """The delete or recycle of the PV under way now, if any."""
        return self._under_way.get(pv_name)

    async def sync_volume(self, world: World, pv_obj: Object) -> None:
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
            log.info("volume %s released: its claim is gone", pv_obj["metadata"]["name"],
                     extra=fields(**object_fields(pv_obj)))
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
        started = trio.current_time()
        progress = Progress(f"Deleting the storage of volume {name}")
        await self._record(pv_obj, "Normal", "Deleting",
                           "Deleting the volume's storage (reclaim policy Delete)")
        try:
            self._under_way[name] = progress
            done = await deleter.delete(pv_obj, progress)
        except ReclaimFailed as exc:
            _timed("delete", "failure", started)
            await self._fail(pv_obj, "VolumeFailedDelete", str(exc))
            return
        finally:
            self._under_way.pop(name, None)
        _timed("delete", "success", started)
        await self._db.delete(PV, "", name)
        await self._record(pv_obj, "Normal", "Deleted", f"{done}: {progress.summary()}")

    async def _reclaim_recycle(self, pv_obj: Object) -> None:
        recycler = self._sources.recycler(pv_obj)
        if recycler is None:
            await self._fail(pv_obj, "VolumeFailedRecycle",
                             "no recyclable volume plugin matched")
            return
        started = trio.current_time()
        name = pv_obj["metadata"]["name"]
        progress = Progress(f"Recycling volume {name}")
        await self._record(pv_obj, "Normal", "Recycling",
                           "Recycling the volume: emptying it for its next claim")
        try:
            self._under_way[name] = progress
            done = await recycler.recycle(pv_obj, progress)
        except ReclaimFailed as exc:
            _timed("recycle", "failure", started)
            await self._fail(pv_obj, "VolumeFailedRecycle", f"recycle failed: {exc}")
            return
        finally:
            self._under_way.pop(name, None)
        _timed("recycle", "success", started)
        pv_obj["spec"].pop("claimRef", None)
        pv_obj["status"] = {"phase": "Available"}
        await self._db.put(pv_obj)
        await self._record(pv_obj, "Normal", "VolumeRecycled",
                           f"Volume recycled: {done}: {progress.summary()}")

    async def _fail(self, pv_obj: Object, reason: str, message: str) -> None:
        if pv_obj.get("status", {}).get("phase") == "Failed":
            return
        pv_obj["status"] = {"phase": "Failed", "reason": reason, "message": message}
        await self._db.put(pv_obj)
        await self._record(pv_obj, "Warning", reason, message)


def _timed(operation: str, result: str, started: float) -> None:
    PROVISIONER_OPERATIONS.series(operation, result).observe(trio.current_time() - started)
