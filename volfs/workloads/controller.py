"""The workload controller: ReplicationControllers and StatefulSets, kept true.

One task in the daemon's nursery runs passes: every workload reconciled (under the
workloads' lock, so API writes of workloads wait for a pass over one object, and a
pass never acts on a workload deleted meanwhile), then garbage collected. A pass runs
after any change to the state database (a pod deleted, a claim bound, a scale), and
every few seconds besides; a pass that finds nothing to do writes nothing, so it does
not wake the next one.

A workload whose replica cannot be made (its template asks for a hostPath outside the
allow-list, a container fails to start) gets a FailedCreate event and is left alone
for a while (doubling up to a minute), not retried at every change.

Deletes honour ``propagationPolicy``: ``Background`` (the default) forgets the
workload and lets the collector take its pods; ``Foreground`` deletes the pods first
and the workload last, before answering; ``Orphan`` drops the pods' owner reference
and leaves them running.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

import trio

from volfs.api.errors import Invalid, NotFound
from volfs.api.workloads import (
    REPLICATION_CONTROLLER,
    STATEFUL_SET,
    build_replication_controller,
    build_stateful_set,
)
from volfs.logs import unexpected
from volfs.state import AsyncStateDB
from volfs.workloads.collector import collect
from volfs.workloads.owners import created_key, owned_by, without_owner
from volfs.workloads.parts import Claims, CreateFailed, Object, Parts, Pods
from volfs.workloads.replication import reconcile_controller
from volfs.workloads.stateful import ordinal_of, reconcile_stateful_set
from volfs.workloads.store import WorkloadStore

log = logging.getLogger(__name__)

PROPAGATION_POLICIES = ("Background", "Foreground", "Orphan")
INTERVAL = 5.0  # seconds between passes when nothing changes
COALESCE = 0.05  # a burst of changes is one pass
FIRST_BACKOFF, MOST_BACKOFF = 2.0, 60.0

Reconcile = Callable[[Parts, Object], Awaitable[Object]]


class Workloads:
    """The stores of both kinds, and the task that reconciles them."""

    def __init__(self, db: AsyncStateDB, pods: Pods, claims: Claims) -> None:
        self._parts = Parts(db, pods, claims)
        self._db = db
        self._lock = trio.Lock()
        self._wake = trio.Event()
        self._backoff: dict[str, tuple[float, float]] = {}  # uid -> (until, delay)
        self.controllers = WorkloadStore(db, REPLICATION_CONTROLLER,
                                         build_replication_controller, self._lock, self.wake)
        self.stateful_sets = WorkloadStore(db, STATEFUL_SET, build_stateful_set, self._lock,
                                           self.wake)
        self._reconcilers: list[tuple[WorkloadStore, Reconcile]] = [
            (self.controllers, reconcile_controller),
            (self.stateful_sets, reconcile_stateful_set)]

    def wake(self) -> None:
        """Run a pass soon."""
        self._wake.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Pass after pass, until cancelled."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._follow_changes)
            task_status.started()
            while True:
                self._wake = trio.Event()  # before the pass reads: no change is missed
                try:
                    await self.sync()
                except Exception:  # a bug: its traceback once; the next pass tries again
                    unexpected(log, "workload pass failed")
                with trio.move_on_after(INTERVAL):
                    await self._wake.wait()
                await trio.sleep(COALESCE)

    async def _follow_changes(self) -> None:
        """Every committed write of the state database wakes a pass."""
        while True:
            await self._db.next_change().wait()
            self.wake()

    async def sync(self) -> None:
        """One pass: every workload reconciled, then orphans collected."""
        for store, reconcile in self._reconcilers:
            for obj in await store.list(None):
                await self._reconcile(store, reconcile, obj)
        await collect(self._parts)

    async def _reconcile(self, store: WorkloadStore, reconcile: Reconcile,
                         listed: Object) -> None:
        meta = listed["metadata"]
        uid = meta["uid"]
        until, _ = self._backoff.get(uid, (0.0, 0.0))
        if time.monotonic() < until:
            return
        async with self._lock:
            obj = await self._db.get(store.kind, meta["namespace"], meta["name"])
            if obj is None or obj["metadata"]["uid"] != uid:
                return  # deleted (or replaced) since the list
            try:
                status = await reconcile(self._parts, obj)
            except CreateFailed as exc:
                self._back_off(uid)
                log.warning("%s %s/%s: %s", store.kind, meta["namespace"], meta["name"], exc)
                return
            self._backoff.pop(uid, None)
            await store.set_status(obj, status)

    def _back_off(self, uid: str) -> None:
        _, delay = self._backoff.get(uid, (0.0, FIRST_BACKOFF / 2))
        delay = min(delay * 2, MOST_BACKOFF)
        self._backoff[uid] = (time.monotonic() + delay, delay)

    # -- deletes ---------------------------------------------------------------------------

    async def delete(self, store: WorkloadStore, namespace: str, name: str,
                     policy: str | None) -> Object:
        """Delete a workload, its pods as ``policy`` says (None: Background).

        Raises NotFound, Invalid (an unknown policy).
        """
        policy = policy or "Background"
        if policy not in PROPAGATION_POLICIES:
            raise Invalid(store.kind, name, [("propagationPolicy", (
                f'Unsupported value: "{policy}": supported values: "Foreground", '
                '"Background", "Orphan"'))])
        async with self._lock:
            obj = await store.get(namespace, name)
            uid = obj["metadata"]["uid"]
            if policy == "Orphan":
                await self._orphan(namespace, uid)
            elif policy == "Foreground":
                await self._delete_dependents(obj)
            deleted = await store.delete(namespace, name)
        self._backoff.pop(uid, None)
        return deleted

    async def _orphan(self, namespace: str, uid: str) -> None:
        for pod in await self._parts.pods_of(namespace):
            if owned_by(pod, uid):
                with contextlib.suppress(NotFound):
                    await self._parts.pods.update_pod(without_owner(pod, uid))

    async def _delete_dependents(self, obj: Object) -> None:
        """Its pods, newest (or highest ordinal) first, each gone before the next."""
        meta = obj["metadata"]
        pods = [p for p in await self._parts.pods_of(meta["namespace"])
                if owned_by(p, meta["uid"])]
        if obj["kind"] == STATEFUL_SET:
            pods.sort(key=lambda p: -(ordinal_of(meta["name"], p["metadata"]["name"]) or 0))
        else:
            pods.sort(key=created_key, reverse=True)
        for pod in pods:
            with contextlib.suppress(NotFound):
                await self._parts.pods.delete_pod(meta["namespace"], pod["metadata"]["name"])
