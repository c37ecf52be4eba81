"""Pod lifecycle: set a pod's volumes up all-or-nothing, run hooks, remember it.

Create: set up every volume, publish them in the tree, run the create hooks,
commit the pod to the state database, and only then answer. Any failure undoes
what was done, in reverse. Delete: run the delete hooks (failures reported, not
fatal), withdraw the volumes, forget the pod, wipe the volumes.

After a restart, :meth:`PodManager.restore` sets up every pod the database
knows (set-up is idempotent) and wipes volume directories no pod owns (left by
a crash between a set-up and its commit, or a delete and its wipe).

A pod annotated ``volfs.io/run: "true"`` also has its containers run by the
ContainerRuntime (volfs.runtime): started after its volumes and create hooks (a
failure to start rolls the pod back), stopped and removed before its volumes are
torn down, and reported in ``status.containerStatuses``.
"""

from __future__ import annotations

import datetime
import logging
import shutil
import uuid
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, Protocol

import trio

from volfs.api import ManifestError, Pod, parse_pod
from volfs.api.errors import (
    AlreadyExists,
    Conflict,
    Invalid,
    NotFound,
    RequestError,
    SetupFailed,
)
from volfs.api.storage import claims_of
from volfs.fs import Filesystem, ServedVolume
from volfs.lifecycle.hooks import ON_CREATE, ON_DELETE, HookFailed, HookRunner
from volfs.lifecycle.service import DeleteResult
from volfs.lifecycle.updates import pod_update_causes
from volfs.lifecycle.volumes import (
    PluginRegistry,
    PodRef,
    VolumeNotReady,
    VolumePlugin,
    VolumeRefused,
)
from volfs.runtime import (
    ContainerRuntime,
    ContainerState,
    RunRefused,
    RuntimeFailed,
    RuntimeUnavailable,
    check_runnable,
    plan_pod,
    pod_phase,
    prepare_binds,
    runs_containers,
)
from volfs.state import AsyncStateDB
from volfs.state.events import WARNING, record_event

log = logging.getLogger(__name__)

POD = "Pod"
Object = dict[str, Any]
# Metadata an update cannot set: kept from the stored pod.
_SYSTEM_METADATA = ("name", "namespace", "uid", "resourceVersion", "creationTimestamp",
                    "deletionTimestamp", "deletionGracePeriodSeconds", "generation",
                    "selfLink", "managedFields")


class ContainersNotRemoved(RequestError):
    """The engine refused to remove a pod's containers: the pod and its volumes stay."""


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
        self._plugins = plugins
        self._hooks = hooks
        self._root = root
        self._runtime = runtime
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
            obj = _new_object(pod)
            uid = obj["metadata"]["uid"]
            ref = PodRef(uid, namespace, name)
            async with AsyncExitStack() as undo:
                served, waiting = await self._set_up(ref, pod, undo)
                self._fs.publish_pod(uid, served)
                undo.callback(self._fs.withdraw_pod, uid)
                if waiting:
                    _mark_waiting(obj, waiting)
                await self._run_create_hooks(obj)
                if runs_containers(obj) and not waiting:
                    await self._start_containers(obj, pod, undo)
                await self._db.put(obj)
                undo.pop_all()
            await record_event(self._db, obj, "Created",
                               f"Created pod {name}; volumes set up: {_volume_names(pod)}")
            for reason in waiting:
                await record_event(self._db, obj, "FailedMount", reason, WARNING)
            if waiting and self._binder is not None:
                self._binder.wake()
            return (await self._with_container_status([self._with_volume_status(obj)]))[0]

    async def delete_pod(self, namespace: str, name: str) -> DeleteResult:
        """Stop the pod's containers, then run the delete hooks and tear its volumes down.

        The containers stop outside the lock: a container that ignores SIGTERM holds
        its delete for the whole grace period, and other pods must not wait for it.
        A second delete of the same pod waits for the first.
        """
        key = (namespace, name)
        obj = await self._begin_delete(key)
        try:
            warnings = await self._remove_containers(obj)
            async with self._lock:
                obj = await self._db.get(POD, namespace, name) or obj  # labels may have moved
                reported = self._with_volume_status(obj)
                uid = obj["metadata"]["uid"]
                warnings += await self._hooks.run_stage_reporting(ON_DELETE, obj)
                self._fs.withdraw_pod(uid)
                await self._db.delete(POD, namespace, name)
                await self._tear_down(PodRef(uid, namespace, name), _parse(obj))
                return DeleteResult(reported, warnings)
        finally:
            self._deleting.pop(key).set()

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
                                       f"{_volume_names(_parse(obj))}")
                    self._deleting[key] = trio.Event()
                    return obj
            await under_way.wait()

    async def get_pod(self, namespace: str, name: str) -> Object:
        obj = await self._db.get(POD, namespace, name)
        if obj is None:
            raise NotFound(POD, namespace, name)
        return (await self._with_container_status([self._with_volume_status(obj)]))[0]

    async def list_pods(self, namespace: str | None) -> list[Object]:
        return await self._with_container_status(
            [self._with_volume_status(obj) for obj in await self._db.list(POD, namespace)])

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
        """Serve every known pod again; wipe what no known pod owns."""
        known = set()
        for obj in await self._db.list(POD):
            uid = obj["metadata"]["uid"]
            known.add(uid)
            try:
                served, waiting = await self._set_up(_ref(obj), _parse(obj), None)
            except Exception as exc:
                log.error("pod %s/%s: volumes could not be set up again: %s",
                          obj["metadata"].get("namespace"), obj["metadata"]["name"], exc)
                continue
            self._fs.publish_pod(uid, served)
            for reason in waiting:
                log.warning("pod %s/%s waits: %s", obj["metadata"].get("namespace"),
                            obj["metadata"]["name"], reason)
        for top in volume_dirs:
            for leftover in sorted(top.iterdir()) if top.is_dir() else []:
                if leftover.name not in known:
                    log.info("removing %s: it belongs to no pod", leftover)
                    await trio.to_thread.run_sync(_remove_any, leftover)

    async def close(self) -> None:
        """The daemon stops: close every volume plugin's stores (their data stays)."""
        await self._plugins.close()

    async def claims_bound(self) -> None:
        """Set up the volumes Pending pods wait for (a claim was bound): called by the binder
        (``StorageController.tell_when_bound``)."""
        async with self._lock:
            for obj in await self._db.list(POD):
                meta = obj["metadata"]
                if _waiting(obj) and (meta["namespace"], meta["name"]) not in self._deleting:
                    await self._resume(obj)

    async def _resume(self, obj: Object) -> None:
        """Try a waiting pod's missing volumes again; Running once none is missing."""
        uid, pod = obj["metadata"]["uid"], _parse(obj)
        have = self._fs.volumes(uid)
        try:
            served, waiting = await self._set_up(_ref(obj), pod, None,
                                                 skip={v.name for v in have})
        except (Invalid, SetupFailed) as exc:
            log.warning("pod %s still waits: %s", obj["metadata"]["name"], exc)
            return
        self._fs.publish_pod(uid, have + served)
        if waiting:
            return
        _mark_ready(obj)
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
                           f"all volumes are set up: {_volume_names(pod)}")

    async def claim_users(self, namespace: str, claim_name: str) -> list[str]:
        """The pods of ``namespace`` whose volumes name the claim."""
        return [obj["metadata"]["name"] for obj in await self._db.list(POD, namespace)
                if claim_name in claims_of(obj)]

    async def sweep_containers(self) -> int:
        """Remove this daemon's containers whose pod is gone (a delete made while the
        engine was unreachable, a crash between a start and its commit); how many pods'.

        Best effort: an unreachable engine is left for the next sweep.
        """
        if self._runtime is None:
            return 0
        async with self._lock:
            known = {obj["metadata"]["uid"] for obj in await self._db.list(POD)}
            try:
                orphans = set(await self._runtime.pod_states(None)) - known
                for uid in sorted(orphans):
                    log.info("removing the containers of pod %s: the pod is gone", uid)
                    await self._runtime.remove_pod(uid, 0)
            except (RuntimeUnavailable, RuntimeFailed) as exc:
                log.info("containers of deleted pods not swept: %s", exc)
                return 0
            return len(orphans)

    # -- helpers -------------------------------------------------------------------------

    def _check(self, pod: Pod) -> None:
        """Every volume supported and acceptable to its plugin, before anything is made."""
        causes = []
        if runs_containers(pod):
            causes += check_runnable(pod)
        for index, volume in enumerate(pod.spec.volumes or []):
            kind = volume.source_kind()
            plugin = self._plugins.find(volume)
            if plugin is None:
                causes.append((f"spec.volumes[{index}].{kind}",
                               f"volume kind {kind} is not supported yet (supported: "
                               f"{', '.join(self._plugins.supported())})"))
                continue
            try:
                plugin.check(volume)
            except VolumeRefused as exc:
                causes.append(_refusal(pod, index, volume, exc))
        if causes:
            raise Invalid(POD, pod.metadata.name, causes)

    async def _set_up(self, ref: PodRef, pod: Pod, undo: AsyncExitStack | None,
                      skip: set[str] | None = None) -> tuple[list[ServedVolume], list[str]]:
        """Set up the pod's volumes (but those in ``skip``): those served, and one line
        per volume that must wait (VolumeNotReady) before it can be."""
        served, waiting = [], []
        uid = ref.uid
        for index, volume in enumerate(pod.spec.volumes or []):
            if skip and volume.name in skip:
                continue
            plugin = self._plugin(volume)
            try:
                store = await plugin.set_up(ref, volume, _mounted_read_only(pod, volume.name))
            except VolumeNotReady as exc:
                waiting.append(f"volume {volume.name}: {exc}")
                continue
            except VolumeRefused as exc:
                field, message = _refusal(pod, index, volume, exc)
                await self._failed_mount(uid, pod, message)
                raise Invalid(POD, pod.metadata.name, [(field, message)]) from exc
            except OSError as exc:
                await self._failed_mount(uid, pod, f"volume {volume.name}: set-up failed: {exc}")
                raise SetupFailed(f"volume {volume.name}: set-up failed: {exc}") from exc
            if undo is not None:
                undo.push_async_callback(plugin.tear_down, ref, volume)
            served.append(ServedVolume(uid, plugin.kind_dir, volume.name, store))
        return served, waiting

    async def _failed_mount(self, uid: str, pod: Pod, message: str) -> None:
        obj = pod.to_k8s()
        obj["metadata"]["uid"] = uid
        await record_event(self._db, obj, "FailedMount", message, WARNING)

    async def _tear_down(self, ref: PodRef, pod: Pod) -> None:
        for volume in pod.spec.volumes or []:
            try:
                await self._plugin(volume).tear_down(ref, volume)
            except OSError as exc:  # restore() wipes it at the next start
                log.error("pod %s: volume %s: tear-down failed: %s", ref.uid, volume.name, exc)

    async def _run_create_hooks(self, obj: Object) -> None:
        try:
            await self._hooks.run_stage(ON_CREATE, obj)
        except HookFailed as exc:
            raise SetupFailed(str(exc)) from exc

    async def _start_containers(self, obj: Object, pod: Pod, undo: AsyncExitStack) -> None:
        """Start the pod's containers on its published volumes; undone by ``undo``."""
        name = pod.metadata.name
        if self._runtime is None:
            raise SetupFailed(f"pod {name}: this volfs daemon runs no containers")
        uid = obj["metadata"]["uid"]
        try:
            plan = plan_pod(pod, uid, self._with_volume_status(obj)["status"]["mounts"])
        except RunRefused as exc:
            raise Invalid(POD, name, [(exc.field, str(exc))]) from exc
        undo.push_async_callback(self._remove_containers_quietly, uid)
        try:
            await trio.to_thread.run_sync(prepare_binds, plan)
            await self._runtime.start_pod(plan)
        except (RuntimeUnavailable, RuntimeFailed) as exc:
            raise SetupFailed(f"containers not started: {exc}") from exc

    async def _remove_containers_quietly(self, uid: str) -> None:
        assert self._runtime is not None
        try:
            await self._runtime.remove_pod(uid, 0)
        except (RuntimeUnavailable, RuntimeFailed) as exc:  # sweep_containers retries
            log.error("pod %s: containers not removed during rollback: %s", uid, exc)

    async def _remove_containers(self, obj: Object) -> list[str]:
        """Stop and remove a run pod's containers; the warnings to report.

        An unreachable engine is a warning (the delete goes on; a later sweep
        removes what is left), an engine that refuses stops the delete.
        """
        if self._runtime is None or not runs_containers(obj):
            return []
        grace = (obj.get("spec") or {}).get("terminationGracePeriodSeconds")
        try:
            await self._runtime.remove_pod(obj["metadata"]["uid"],
                                           30.0 if grace is None else float(grace))
        except RuntimeUnavailable as exc:
            return [f"containers not removed: {exc}"]
        except RuntimeFailed as exc:
            raise ContainersNotRemoved(
                f'pods "{obj["metadata"]["name"]}": containers not removed, so the pod '
                f"and its volumes stay: {exc}") from exc
        return []

    async def _with_container_status(self, objs: list[Object]) -> list[Object]:
        """Objects with ``status.containerStatuses`` and phase for pods volfs runs."""
        run = [obj for obj in objs if runs_containers(obj)]
        states: dict[str, list[ContainerState]] = {}
        unknown = ""
        if run and self._runtime is not None:
            try:
                states = await self._runtime.pod_states([o["metadata"]["uid"] for o in run])
            except (RuntimeUnavailable, RuntimeFailed) as exc:
                unknown = str(exc)
        return [_container_status(obj, states, unknown) if runs_containers(obj) else obj
                for obj in objs]

    def _plugin(self, volume: Any) -> VolumePlugin:
        plugin = self._plugins.find(volume)
        if plugin is None:
            raise SetupFailed(f"volume {volume.name}: kind {volume.source_kind()} unsupported")
        return plugin

    def _with_volume_status(self, obj: Object) -> Object:
        """The object as clients see it: stored fields plus each volume's path and usage."""
        uid = obj["metadata"]["uid"]
        pod = _parse(obj)
        live = {v.name: v for v in self._fs.volumes(uid)}
        volumes = []
        for volume in pod.spec.volumes or []:
            plugin = self._plugins.find(volume)
            served = live.get(volume.name)
            info: Object = {"name": volume.name, "kind": volume.source_kind()}
            if plugin is not None:
                info["path"] = str(self._root / "pods" / uid / "volumes" / plugin.kind_dir
                                   / volume.name)
                info.update(plugin.describe(volume))
            store = served.store if served is not None else None
            info["usedBytes"] = store.usage.used if store and store.track_usage else None
            info["readOnly"] = store.read_only if store else None
            volumes.append(info)
        status = dict(obj.get("status") or {}, volumes=volumes, mounts=_mounts(pod, volumes))
        return dict(obj, status=status)


def _container_status(obj: Object, states: dict[str, list[ContainerState]],
                      unknown: str) -> Object:
    """``obj`` with its containers' states, in spec order, and the phase they imply."""
    spec_names = [c.get("name") for c in (obj.get("spec") or {}).get("containers") or []]
    found = {s.name: s for s in states.get(obj["metadata"]["uid"], [])}
    statuses = []
    for name in spec_names:
        state = found.get(name)
        if state is None:
            state = ContainerState(name=str(name), state="waiting",
                                   reason="ContainerStatusUnknown",
                                   message=unknown or "no such container on the engine")
        statuses.append(state)
    status = dict(obj.get("status") or {}, containerStatuses=[s.to_k8s() for s in statuses],
                  phase="Unknown" if unknown else pod_phase(statuses, len(spec_names)))
    return dict(obj, status=status)


def _ref(obj: Object) -> PodRef:
    meta = obj["metadata"]
    return PodRef(meta["uid"], meta.get("namespace") or "default", meta["name"])


def _waiting(obj: Object) -> bool:
    """Whether the pod waits for volumes (a claim not bound yet)."""
    return any(c.get("type") == "VolumesReady" and c.get("status") == "False"
               for c in (obj.get("status") or {}).get("conditions") or [])


def _mark_waiting(obj: Object, waiting: list[str]) -> None:
    """Pending, with what it waits for (as kubelet reports an unmountable volume)."""
    status = obj["status"]
    status["phase"] = "Pending"
    status["conditions"] = [{"type": "VolumesReady", "status": "False",
                             "reason": "VolumesNotReady", "message": "; ".join(waiting),
                             "lastTransitionTime": _now()}]


def _mark_ready(obj: Object) -> None:
    status = obj["status"]
    status["phase"] = "Running"
    status["conditions"] = [{"type": "VolumesReady", "status": "True",
                             "lastTransitionTime": _now()}]


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _volume_names(pod: Pod) -> str:
    return ", ".join(v.name for v in pod.spec.volumes or []) or "none"


def _refusal(pod: Pod, index: int, volume: Any, exc: VolumeRefused) -> tuple[str, str]:
    """A plugin's refusal as a field cause: ``pod web: volume logs: hostPath /x: ...``."""
    kind = volume.source_kind()
    field = f"spec.volumes[{index}].{kind}" + (f".{exc.field}" if exc.field else "")
    return field, f"pod {pod.metadata.name}: volume {volume.name}: {kind} {exc}"


def _all_mounts(pod: Pod) -> list[tuple[str, Any]]:
    containers = list(pod.spec.init_containers or []) + list(pod.spec.containers)
    return [(c.name, m) for c in containers for m in c.volume_mounts or []]


def _mounted_read_only(pod: Pod, volume_name: str) -> bool:
    """kubelet serves a volume read-only when every mount of it in the pod is."""
    mounts = [m for _, m in _all_mounts(pod) if m.name == volume_name]
    return bool(mounts) and all(m.read_only for m in mounts)


def _mounts(pod: Pod, volumes: list[Object]) -> list[Object]:
    """Per container mount: what a runtime binds where, and whether to add ``:ro``."""
    paths = {v["name"]: v.get("path") for v in volumes}
    served_ro = {v["name"]: bool(v.get("readOnly")) for v in volumes}
    return [{"container": container, "name": m.name, "mountPath": m.mount_path,
             "subPath": m.sub_path, "path": paths.get(m.name),
             "readOnly": m.read_only or served_ro.get(m.name, False)}
            for container, m in _all_mounts(pod)]


def _new_object(pod: Pod) -> Object:
    """The stored form of a new pod: the manifest plus identity and status."""
    obj = pod.to_k8s()
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    meta = obj.setdefault("metadata", {})
    meta.update(uid=str(uuid.uuid4()), creationTimestamp=now,
                namespace=pod.metadata.namespace)
    obj["status"] = {
        "phase": "Running",
        "startTime": now,
        "conditions": [{"type": "VolumesReady", "status": "True", "lastTransitionTime": now}],
    }
    return obj


def _parse(obj: Object) -> Pod:
    """A stored object back into a Pod (it was valid when stored)."""
    try:
        return parse_pod(obj, None)
    except ManifestError as exc:  # only a hand-edited database gets here
        raise SetupFailed(f"stored pod {obj['metadata'].get('name')} is invalid: {exc}") from exc


def _remove_any(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
