"""Pod lifecycle: set a pod's volumes up all-or-nothing, run hooks, remember it.

Create: set up every volume, publish them in the tree, run the create hooks,
commit the pod to the state database, and only then answer. Any failure undoes
what was done, in reverse. Delete: run the delete hooks (failures reported, not
fatal), store the pod as Terminating (its ``deletionTimestamp``), withdraw and wipe
the volumes (the wipe's progress in the pod's status), then forget the pod.

After a restart, :meth:`PodManager.restore` sets up every pod the database
knows (set-up is idempotent), finishes the delete of every Terminating pod, and
wipes volume directories no pod owns (left by a crash between a set-up and its
commit).

A pod annotated ``volfs.io/run: "true"`` also has its containers run by the
ContainerRuntime (volfs.runtime): started after its volumes and create hooks (a
failure to start rolls the pod back), stopped and removed before its volumes are
torn down, and reported in ``status.containerStatuses``.

The pod manager orders these steps; its parts do them: :mod:`pod_volumes` (the
volumes through their plugins), :mod:`pod_containers` (the containers through the
runtime), :mod:`pod_status` (the stored form and its conditions).
"""

from __future__ import annotations

import logging
import shutil
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Protocol

import trio

from volfs.api import ManifestError, Pod, parse_pod
from volfs.api.errors import AlreadyExists, Conflict, Invalid, NotFound, SetupFailed
from volfs.api.storage import claims_of
from volfs.api.times import timestamp_now
from volfs.fs import Filesystem
from volfs.lifecycle.hooks import ON_CREATE, ON_DELETE, HookFailed, HookRunner
from volfs.lifecycle.pod_containers import ContainersNotRemoved, PodContainers
from volfs.lifecycle.pod_status import (
    POD,
    Object,
    mark_ready,
    mark_waiting,
    new_object,
    parse,
    ref,
    waiting,
)
from volfs.lifecycle.pod_volumes import PodVolumes, volume_names
from volfs.lifecycle.service import DeleteResult
from volfs.lifecycle.updates import pod_update_causes
from volfs.lifecycle.volumes import PluginRegistry, PodRef
from volfs.logs import fields, object_fields
from volfs.runtime import ContainerRuntime, check_runnable, runs_containers
from volfs.state import AsyncStateDB
from volfs.state.events import WARNING, record_event

log = logging.getLogger(__name__)

__all__ = ["Binder", "ContainersNotRemoved", "PodManager"]

# Metadata an update cannot set: kept from the stored pod.
_SYSTEM_METADATA = ("name", "namespace", "uid", "resourceVersion", "creationTimestamp",
                    "deletionTimestamp", "deletionGracePeriodSeconds", "generation",
                    "selfLink", "managedFields")


class Binder(Protocol):
    """The claim binder, as the pod manager sees it (the storage controller)."""

    def wake(self) -> None:
        """Look at claims soon: a pod now waits for one (its first consumer)."""
        ...


class PodManager:
    """The PodService the control API calls (see volfs.lifecycle.service).

    ``runtime`` runs the containers of pods annotated ``volfs.io/run: "true"``;
    without one, such pods are refused. ``binder.wake()`` is called once a pod that
    waits for a volume (an unbound claim) is stored, so the binder can act at once.
    """

    def __init__(self, db: AsyncStateDB, fs: Filesystem, plugins: PluginRegistry,
                 hooks: HookRunner, root: Path, runtime: ContainerRuntime | None = None,
                 binder: Binder | None = None) -> None:
        self._db = db
        self._fs = fs
        self._volumes = PodVolumes(db, fs, plugins, root)
        self._containers = PodContainers(runtime)
        self._hooks = hooks
        self._binder = binder
        # One change at a time: a create's checks and its commit must not interleave.
        self._lock = trio.Lock()
        self._deleting: dict[tuple[str, str], trio.Event] = {}  # stopping containers

    # -- PodService ----------------------------------------------------------------

    async def create_pod(self, pod: Pod) -> Object:
        async with self._lock:
            namespace, name = pod.metadata.namespace, pod.metadata.name
            if await self._db.get(POD, namespace, name) is not None:
                raise AlreadyExists(POD, namespace, name)
            self._check(pod)
            obj = new_object(pod)
            uid = obj["metadata"]["uid"]
            pod_ref = PodRef(uid, namespace, name)
            async with AsyncExitStack() as undo:
                served, waits = await self._volumes.set_up(pod_ref, pod, undo)
                self._fs.publish_pod(uid, served)
                undo.callback(self._fs.withdraw_pod, uid)
                if waits:
                    mark_waiting(obj, waits)
                await self._run_create_hooks(obj)
                if runs_containers(obj) and not waits:
                    await self._start_containers(obj, pod, undo)
                await self._db.put(obj)
                undo.pop_all()
            log.info("pod %s/%s created", namespace, name,
                     extra=fields(**object_fields(obj), waits="; ".join(waits)))
            await record_event(self._db, obj, "Created",
                               f"Created pod {name}; volumes set up: {volume_names(pod)}")
            for reason in waits:
                await record_event(self._db, obj, "FailedMount", reason, WARNING)
            if waits and self._binder is not None:
                self._binder.wake()
            return (await self._with_status([obj]))[0]

    async def delete_pod(self, namespace: str, name: str,
                         grace_seconds: float | None = None) -> DeleteResult:
        """Stop the pod's containers, then run the delete hooks and tear its volumes down.

        The containers get ``grace_seconds`` to stop after SIGTERM, else the pod's own
        ``terminationGracePeriodSeconds``.

        The containers stop outside the lock: a container that ignores SIGTERM holds
        its delete for the whole grace period, and other pods must not wait for it.
        A second delete of the same pod waits for the first.
        """
        key = (namespace, name)
        obj = await self._begin_delete(key)
        try:
            warnings = await self._containers.remove(obj, grace_seconds)
            async with self._lock:
                obj = await self._db.get(POD, namespace, name) or obj  # labels may have moved
                reported = self._volumes.with_status(obj)
                warnings += await self._hooks.run_stage_reporting(ON_DELETE, obj)
                await self._finish_delete(await self._terminating(obj))
                return DeleteResult(reported, warnings)
        finally:
            self._deleting.pop(key).set()

    async def _terminating(self, obj: Object) -> Object:
        """The pod, stored with its ``deletionTimestamp``: from here on its delete is
        final (a restart finishes it, see :meth:`restore`), and until it is done the pod
        is shown Terminating, with the wipe under way in its ``status.operation``."""
        if not obj["metadata"].get("deletionTimestamp"):
            obj = dict(obj, metadata=dict(obj["metadata"], deletionTimestamp=timestamp_now()))
            await self._db.put(obj)
        return obj

    async def _finish_delete(self, obj: Object) -> None:
        """Withdraw a Terminating pod's volumes, tear them down, forget the pod."""
        uid, meta = obj["metadata"]["uid"], obj["metadata"]
        self._fs.withdraw_pod(uid)
        await self._volumes.tear_down(PodRef(uid, meta["namespace"], meta["name"]), parse(obj))
        await self._db.delete(POD, meta["namespace"], meta["name"])
        self._volumes.forget(uid)
        log.info("pod %s/%s deleted", meta["namespace"], meta["name"],
                 extra=fields(**object_fields(obj)))

    async def _begin_delete(self, key: tuple[str, str]) -> Object:
        """The pod, noted as being deleted (after any delete of it under way)."""
        namespace, name = key
        while True:
            async with self._lock:
                under_way = self._deleting.get(key)
                if under_way is None:
                    obj = await self._db.get(POD, namespace, name)
                    if obj is None:
                        raise NotFound(POD, namespace, name)
                    await record_event(self._db, obj, "Killing",
                                       f"Deleting pod {name}; tearing down volumes: "
                                       f"{volume_names(parse(obj))}")
                    self._deleting[key] = trio.Event()
                    return obj
            await under_way.wait()

    async def get_pod(self, namespace: str, name: str) -> Object:
        obj = await self._db.get(POD, namespace, name)
        if obj is None:
            raise NotFound(POD, namespace, name)
        return (await self._with_status([obj]))[0]

    async def list_pods(self, namespace: str | None) -> list[Object]:
        return await self._with_status(await self._db.list(POD, namespace))

    async def resource_version(self) -> str:
        return await self._db.resource_version()

    async def update_pod(self, obj: Object) -> Object:
        meta = obj.get("metadata") or {}
        namespace, name = meta.get("namespace") or "default", str(meta.get("name") or "")
        async with self._lock:
            stored = await self._db.get(POD, namespace, name)
            if stored is None:
                raise NotFound(POD, namespace, name)
            expected = meta.get("resourceVersion")
            if expected and expected != stored["metadata"].get("resourceVersion"):
                raise Conflict(POD, name, f'Operation cannot be fulfilled on pods "{name}": the '
                               "object has been modified; please apply your changes to the "
                               "latest version and try again")
            try:
                new = parse_pod(obj, None).to_k8s()
            except ManifestError as exc:
                raise Invalid(POD, name, list(exc.causes)) from exc
            causes = pod_update_causes(stored, new)
            if causes:
                raise Invalid(POD, name, causes)
            kept = {k: v for k, v in stored["metadata"].items() if k in _SYSTEM_METADATA}
            given = {k: v for k, v in new["metadata"].items() if k not in _SYSTEM_METADATA}
            updated = dict(stored, metadata={**kept, **given}, spec=new["spec"])
            if updated != stored:
                await self._db.put(updated)
        return await self.get_pod(namespace, name)

    # -- restart -------------------------------------------------------------------------

    async def restore(self, volume_dirs: list[Path]) -> None:
        """Serve every known pod again, finish the deletes a stop interrupted; wipe what
        no known pod owns."""
        stored = await self._db.list(POD)
        known = {obj["metadata"]["uid"] for obj in stored}
        live = [obj for obj in stored if not obj["metadata"].get("deletionTimestamp")]
        for obj in stored:
            if obj["metadata"].get("deletionTimestamp"):
                log.info("pod %s/%s: finishing its delete", obj["metadata"].get("namespace"),
                         obj["metadata"]["name"])
                await self._finish_delete(obj)
        pairs = list(zip(live, _parsed_or_none(live), strict=True))
        async with self._volumes.prepared([(ref(obj), pod) for obj, pod in pairs
                                           if pod is not None]):
            served = [await self._serve_again(obj, pod) for obj, pod in pairs]
        log.info("%d of %d pods served again", served.count(True), len(live))
        for top in volume_dirs:
            for leftover in sorted(top.iterdir()) if top.is_dir() else []:
                if leftover.name not in known:
                    log.info("removing %s: it belongs to no pod", leftover,
                             extra=fields(uid=leftover.name))
                    await trio.to_thread.run_sync(_remove_any, leftover)

    async def _serve_again(self, obj: Object, pod: Pod | None) -> bool:
        """Set a stored pod's volumes up again and publish them (``pod``: the object
        parsed, None when it did not parse: it is parsed again, for the error); False
        if they could not be (said in an error line)."""
        uid = obj["metadata"]["uid"]
        try:
            pod = pod or parse(obj)
            # A line per volume is a debug line here: a start with 1,000 pods would log
            # 3,000 (~0.05 s of the start); restore() says how many in one line.
            served, waits = await self._volumes.set_up(ref(obj), pod, None,
                                                       level=logging.DEBUG)
        except (Invalid, SetupFailed, OSError) as exc:  # the pod's, not the daemon's
            about = object_fields(obj)
            log.error("pod %s: volumes could not be set up again: %s", about["pod"], exc,
                      extra=fields(**about))
            return False
        except Exception:  # a bug: said once, with its traceback; the other pods go on
            about = object_fields(obj)
            log.exception("pod %s: volumes could not be set up again", about["pod"],
                          extra=fields(**about))
            return False
        self._fs.publish_pod(uid, served)
        self._volumes.remember(obj, pod)  # the first list finds it parsed
        for reason in waits:
            about = object_fields(obj)
            log.warning("pod %s waits: %s", about["pod"], reason, extra=fields(**about))
        return True

    def mounted(self, at: float, recovers: bool) -> None:
        """The mount is up since ``at``: containers started before it hold a dead mount,
        and their pods say so (``recovers``: the daemon restarts them itself)."""
        self._containers.mounted(at, recovers)

    async def close(self) -> None:
        """The daemon stops: close every volume plugin's stores (their data stays)."""
        await self._volumes.close()

    async def claims_bound(self) -> None:
        """Set up the volumes Pending pods wait for (a claim was bound): called by the binder
        (``StorageController.tell_when_bound``)."""
        async with self._lock:
            for obj in await self._db.list(POD):
                meta = obj["metadata"]
                if waiting(obj) and (meta["namespace"], meta["name"]) not in self._deleting:
                    await self._resume(obj)

    async def _resume(self, obj: Object) -> None:
        """Try a waiting pod's missing volumes again; Running once none is missing."""
        uid, pod = obj["metadata"]["uid"], parse(obj)
        have = self._fs.volumes(uid)
        try:
            served, waits = await self._volumes.set_up(ref(obj), pod, None,
                                                       skip={v.name for v in have})
        except (Invalid, SetupFailed) as exc:
            about = object_fields(obj)
            log.warning("pod %s still waits: %s", about["pod"], exc, extra=fields(**about))
            return
        self._fs.publish_pod(uid, have + served)
        if waits:
            return
        mark_ready(obj)
        if runs_containers(obj):
            try:
                async with AsyncExitStack() as undo:
                    await self._start_containers(obj, pod, undo)
                    undo.pop_all()
            except (Invalid, SetupFailed) as exc:
                await record_event(self._db, obj, "Failed", str(exc), WARNING)
                return
        await self._db.put(obj)
        await record_event(self._db, obj, "VolumesReady",
                           f"all volumes are set up: {volume_names(pod)}")

    async def claim_users(self, namespace: str, claim_name: str) -> list[str]:
        """The pods of ``namespace`` whose volumes name the claim."""
        return [obj["metadata"]["name"] for obj in await self._db.list(POD, namespace)
                if claim_name in claims_of(obj)]

    async def sweep_containers(self) -> int:
        """Remove this daemon's containers whose pod is gone (a delete made while the
        engine was unreachable, a crash between a start and its commit); how many pods'.
        """
        async with self._lock:
            known = {obj["metadata"]["uid"] for obj in await self._db.list(POD)}
            return await self._containers.sweep(known)

    # -- helpers -------------------------------------------------------------------------

    def _check(self, pod: Pod) -> None:
        """Every volume supported and acceptable to its plugin, and the containers runnable
        if volfs is to run them, before anything is made."""
        causes = list(check_runnable(pod)) if runs_containers(pod) else []
        causes += self._volumes.causes(pod)
        if causes:
            raise Invalid(POD, pod.metadata.name, causes)

    async def _run_create_hooks(self, obj: Object) -> None:
        try:
            await self._hooks.run_stage(ON_CREATE, obj)
        except HookFailed as exc:
            raise SetupFailed(str(exc)) from exc

    async def _start_containers(self, obj: Object, pod: Pod, undo: AsyncExitStack) -> None:
        mounts = self._volumes.with_status(obj)["status"]["mounts"]
        await self._containers.start(obj, pod, mounts, undo)

    async def _with_status(self, objs: list[Object]) -> list[Object]:
        """Stored pods as clients see them: volumes' paths and usage, containers' states."""
        return await self._containers.with_status([self._volumes.with_status(o) for o in objs])


def _parsed_or_none(objs: list[Object]) -> list[Pod | None]:
    """Each stored pod parsed, or None where it does not parse (a bug, or a hand-edited
    database: its own set-up says so, and the others go on)."""
    parsed: list[Pod | None] = []
    for obj in objs:
        try:
            parsed.append(parse(obj))
        except Exception:  # noqa: BLE001 - reported when its set-up parses it again
            parsed.append(None)
    return parsed


def _remove_any(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
