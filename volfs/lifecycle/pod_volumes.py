"""A pod's volumes, all of them at once: checked, set up (all or nothing, with an undo
stack), torn down, and reported in the pod's status (path, usage, read-only, what
each container mount binds where, and the wipe under way while a pod is deleted)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from volfs.api import Pod
from volfs.api.errors import Cause, Invalid, SetupFailed
from volfs.fs import Filesystem, ServedVolume
from volfs.lifecycle.pod_status import POD, Object, parse
from volfs.lifecycle.volumes import (
    BatchPreparer,
    DataWiper,
    PluginRegistry,
    PodRef,
    VolumeNotReady,
    VolumePlugin,
    VolumeRefused,
)
from volfs.logs import fields
from volfs.state import AsyncStateDB
from volfs.state.events import WARNING, record_event
from volfs.stores.progress import Progress

log = logging.getLogger(__name__)

_Mount = tuple[str, str, str, str | None, bool]  # container, volume, mountPath, subPath, ro


@dataclass(frozen=True)
class _Layout:
    """A pod's volumes as its spec describes them (name, kind, path, the plugin's
    description), and its containers' mounts: the part of its status that changes only
    with its spec."""

    volumes: tuple[Object, ...]
    mounts: tuple[_Mount, ...]


class PodVolumes:
    """The volume side of the pod manager, over the volume plugins."""

    def __init__(self, db: AsyncStateDB, fs: Filesystem, plugins: PluginRegistry,
                 root: Path) -> None:
        self._db = db
        self._fs = fs
        self._plugins = plugins
        self._root = root
        self._wiping: dict[str, Progress] = {}  # pod uid → the volume being wiped
        self._layouts: dict[str, tuple[str, _Layout]] = {}  # uid → (resourceVersion, layout)

    def causes(self, pod: Pod) -> list[Cause]:
        """What is wrong with the pod's volumes (unsupported, refused by a plugin's check),
        found before anything is made."""
        causes = []
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
        return causes

    async def set_up(self, ref: PodRef, pod: Pod, undo: AsyncExitStack | None,
                     skip: set[str] | None = None, level: int = logging.INFO
                     ) -> tuple[list[ServedVolume], list[str]]:
        """Set up the pod's volumes (but those in ``skip``): those served, and one line
        per volume that must wait (VolumeNotReady) before it can be. Each set-up is
        undone by ``undo`` if given, and logged at ``level``."""
        served, waiting = [], []
        for index, volume in enumerate(pod.spec.volumes or []):
            if skip and volume.name in skip:
                continue
            plugin = self._plugin(volume)
            try:
                store = await plugin.set_up(ref, volume, mounted_read_only(pod, volume.name))
            except VolumeNotReady as exc:
                waiting.append(f"volume {volume.name}: {exc}")
                continue
            except VolumeRefused as exc:
                field, message = _refusal(pod, index, volume, exc)
                await self._failed_mount(ref.uid, pod, message)
                raise Invalid(POD, pod.metadata.name, [(field, message)]) from exc
            except OSError as exc:
                message = f"volume {volume.name}: set-up failed: {exc}"
                await self._failed_mount(ref.uid, pod, message)
                raise SetupFailed(message) from exc
            if undo is not None:
                undo.push_async_callback(plugin.tear_down, ref, volume)
            served.append(ServedVolume(ref.uid, plugin.kind_dir, volume.name, store))
            if log.isEnabledFor(level):
                log.log(level, "pod %s/%s: volume %s set up", ref.namespace, ref.name,
                        volume.name, extra=_fields(ref, volume))
        return served, waiting

    @asynccontextmanager
    async def prepared(self, pods: list[tuple[PodRef, Pod]]) -> AsyncIterator[None]:
        """Within: the set-up of these pods' volumes finds its slow part done, by the
        plugins that can do it for many volumes at once (``BatchPreparer``). Only while
        no volume is served (the daemon's start, before the mount)."""
        by_plugin: dict[int, tuple[BatchPreparer, list[tuple[PodRef, Any]]]] = {}
        # Whether each plugin is a BatchPreparer, asked once per plugin: isinstance with a
        # runtime-checkable Protocol inspects its members every time (~4 µs; 3,000
        # volumes made it ~12 ms of a start).
        preparers: dict[int, BatchPreparer | None] = {}
        for ref, pod in pods:
            for volume in pod.spec.volumes or []:
                plugin = self._plugins.find(volume)
                key = id(plugin)
                if key not in preparers:
                    preparers[key] = plugin if isinstance(plugin, BatchPreparer) else None
                found = preparers[key]
                if found is not None:
                    by_plugin.setdefault(key, (found, []))[1].append((ref, volume))
        try:
            for preparer, volumes in by_plugin.values():
                await preparer.prepare(volumes)
            yield
        finally:
            for preparer, _ in by_plugin.values():
                preparer.unprepare()

    async def tear_down(self, ref: PodRef, pod: Pod) -> None:
        """Tear every volume down. A volume whose data dies with the pod (an EmptyDir) is
        wiped with an event at each end (``Deleting``, ``Deleted`` with the count and the
        time) and its progress in the pod's ``status.operation`` meanwhile."""
        for volume in pod.spec.volumes or []:
            plugin = self._plugin(volume)
            try:
                if isinstance(plugin, DataWiper):
                    await self._wipe(ref, pod, plugin, volume)
                else:
                    await plugin.tear_down(ref, volume)
            except OSError as exc:  # restore() wipes it at the next start
                log.error("pod %s/%s: volume %s: tear-down failed: %s", ref.namespace,
                          ref.name, volume.name, exc, extra=_fields(ref, volume))
                await record_event(self._db, _involved(ref.uid, pod), "FailedDelete",
                                   f"volume {volume.name}: {exc}; the rest goes at the "
                                   "daemon's next start", WARNING)
                continue
            log.info("pod %s/%s: volume %s torn down", ref.namespace, ref.name, volume.name,
                     extra=_fields(ref, volume))

    async def _wipe(self, ref: PodRef, pod: Pod, plugin: DataWiper, volume: Any) -> None:
        progress = Progress(f"Deleting volume {volume.name}")
        involved = _involved(ref.uid, pod)
        await record_event(self._db, involved, "Deleting",
                           f"Deleting volume {volume.name}: its data goes with the pod")
        self._wiping[ref.uid] = progress
        try:
            await plugin.wipe(ref, volume, progress)
        finally:
            del self._wiping[ref.uid]
        await record_event(self._db, involved, "Deleted",
                           f"Deleted volume {volume.name}: {progress.summary()}")

    async def close(self) -> None:
        await self._plugins.close()

    def with_status(self, obj: Object) -> Object:
        """The object as clients see it: stored fields plus each volume's path and usage."""
        uid = obj["metadata"]["uid"]
        layout = self._layout(obj)
        live = {v.name: v for v in self._fs.volumes(uid)}
        volumes = []
        for info in layout.volumes:
            served = live.get(info["name"])
            store = served.store if served is not None else None
            volumes.append(dict(info, usedBytes=store.usage.used if store and store.track_usage
                                else None, readOnly=store.read_only if store else None))
        status = dict(obj.get("status") or {}, volumes=volumes,
                      mounts=_mounts(layout.mounts, volumes))
        wiping = self._wiping.get(uid)
        if wiping is not None:
            status["operation"] = wiping.as_status()
        return dict(obj, status=status)

    def remember(self, obj: Object, pod: Pod) -> None:
        """Keep the layout of a stored pod already parsed (``pod`` is ``obj`` parsed), so
        that the first list after a restart does not parse every pod a second time. Kept
        under the object's resourceVersion, as :meth:`_layout` keeps it: a later write
        of the pod gives it a new version, and the layout is made again."""
        uid, version = obj["metadata"]["uid"], obj["metadata"].get("resourceVersion")
        if version is not None:
            self._layouts[uid] = (version, self._make_layout(uid, pod))

    def forget(self, uid: str) -> None:
        """The pod is gone from the state: drop what ``with_status`` kept of it."""
        self._layouts.pop(uid, None)

    def _layout(self, obj: Object) -> _Layout:
        """What of the status the pod's spec alone decides, parsed once per version.

        Parsing a stored pod (the manifest's whole validation) costs far more than the
        rest of its status, and a list parses every pod. A stored object's
        resourceVersion changes with every write of it, so a layout kept under the
        version it was made from always matches the spec; an object with no version
        (not stored) is parsed every time.
        """
        uid, version = obj["metadata"]["uid"], obj["metadata"].get("resourceVersion")
        kept = self._layouts.get(uid)
        if kept is not None and version is not None and kept[0] == version:
            return kept[1]
        layout = self._make_layout(uid, parse(obj))
        if version is not None:
            self._layouts[uid] = (version, layout)
        return layout

    def _make_layout(self, uid: str, pod: Pod) -> _Layout:
        volumes = []
        for volume in pod.spec.volumes or []:
            plugin = self._plugins.find(volume)
            info: Object = {"name": volume.name, "kind": volume.source_kind()}
            if plugin is not None:
                info["path"] = str(self._root / "pods" / uid / "volumes" / plugin.kind_dir
                                   / volume.name)
                info.update(plugin.describe(volume))
            volumes.append(info)
        mounts = tuple((container, m.name, m.mount_path, m.sub_path, bool(m.read_only))
                       for container, m in _all_mounts(pod))
        return _Layout(tuple(volumes), mounts)

    async def _failed_mount(self, uid: str, pod: Pod, message: str) -> None:
        await record_event(self._db, _involved(uid, pod), "FailedMount", message, WARNING)

    def _plugin(self, volume: Any) -> VolumePlugin:
        plugin = self._plugins.find(volume)
        if plugin is None:
            raise SetupFailed(f"volume {volume.name}: kind {volume.source_kind()} unsupported")
        return plugin


def _fields(ref: PodRef, volume: Any) -> dict[str, Any]:
    return fields(pod=f"{ref.namespace}/{ref.name}", namespace=ref.namespace, uid=ref.uid,
                  volume=volume.name, kind=volume.source_kind())


def _involved(uid: str, pod: Pod) -> Object:
    """The pod as an event's involved object (the manifest's form, with its uid)."""
    obj = pod.to_k8s()
    obj["metadata"]["uid"] = uid
    return obj


def volume_names(pod: Pod) -> str:
    return ", ".join(v.name for v in pod.spec.volumes or []) or "none"


def mounted_read_only(pod: Pod, volume_name: str) -> bool:
    """kubelet serves a volume read-only when every mount of it in the pod is."""
    mounts = [m for _, m in _all_mounts(pod) if m.name == volume_name]
    return bool(mounts) and all(m.read_only for m in mounts)


def _refusal(pod: Pod, index: int, volume: Any, exc: VolumeRefused) -> tuple[str, str]:
    """A plugin's refusal as a field cause: ``pod web: volume logs: hostPath /x: ...``."""
    kind = volume.source_kind()
    field = f"spec.volumes[{index}].{kind}" + (f".{exc.field}" if exc.field else "")
    return field, f"pod {pod.metadata.name}: volume {volume.name}: {kind} {exc}"


def _all_mounts(pod: Pod) -> list[tuple[str, Any]]:
    containers = list(pod.spec.init_containers or []) + list(pod.spec.containers)
    return [(c.name, m) for c in containers for m in c.volume_mounts or []]


def _mounts(mounts: tuple[_Mount, ...], volumes: list[Object]) -> list[Object]:
    """Per container mount: what a runtime binds where, and whether to add ``:ro``."""
    paths = {v["name"]: v.get("path") for v in volumes}
    served_ro = {v["name"]: bool(v.get("readOnly")) for v in volumes}
    return [{"container": container, "name": name, "mountPath": mount_path,
             "subPath": sub_path, "path": paths.get(name),
             "readOnly": read_only or served_ro.get(name, False)}
            for container, name, mount_path, sub_path, read_only in mounts]
