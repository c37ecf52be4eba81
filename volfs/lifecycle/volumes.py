"""Volume plugins: one per volume kind, each a store plus a set-up/tear-down policy.

Shaped like kubelet's volume plugins: a plugin says whether it supports a
volume (``can_support``), sets it up (``set_up``, safe to repeat: after a
restart the daemon sets up every known pod again) and tears it down
(``tear_down``, also safe to repeat). What a set-up returns is the store the fs
layer serves at ``pods/<uid>/volumes/<kind_dir>/<name>``.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import trio

from volfs.api import Volume
from volfs.api.errors import VolumeNotReady
from volfs.stores.base import Store
from volfs.stores.local import LocalStore
from volfs.stores.progress import Progress, remove_tree
from volfs.stores.quota import Usage, scan_usage

log = logging.getLogger(__name__)

EMPTY_DIR_KIND = "kubernetes.io~empty-dir"
# Only volfs writes to an EmptyDir, so the kernel may cache its entries and
# attributes for long; nothing changes behind its back.
EMPTY_DIR_CACHE_SECONDS = 10.0


__all__ = ["DataWiper", "EmptyDirPlugin", "PluginRegistry", "PodRef", "VolumeNotReady",
           "VolumePlugin", "VolumeRefused"]


@dataclass(frozen=True)
class PodRef:
    """The pod a volume is set up for (kubelet hands its plugins the pod, too)."""

    uid: str
    namespace: str
    name: str


class VolumeRefused(Exception):
    """A volume this plugin will not serve; ``str()`` is one line, ``field`` names
    the part of the volume source at fault (e.g. "path")."""

    field = ""


class VolumePlugin(Protocol):
    @property
    def source_kind(self) -> str:
        """The Volume field this plugin serves, e.g. "emptyDir"."""

    @property
    def kind_dir(self) -> str:
        """kubelet's directory name for the kind, e.g. "kubernetes.io~empty-dir"."""

    def check(self, volume: Volume) -> None:
        """Refuse (raising with a one-line reason) what set-up would refuse; make nothing."""

    async def set_up(self, pod: PodRef, volume: Volume, read_only: bool) -> Store:
        """Make the volume ready (idempotent); ``read_only``: every mount of it is.

        Raises VolumeRefused (never servable as asked) or VolumeNotReady (not yet).
        """

    async def tear_down(self, pod: PodRef, volume: Volume) -> None:
        """Undo set-up (idempotent; also called for a volume that never got set up)."""

    async def close(self) -> None:
        """The daemon stops: let go of what set-up holds (connections), keeping every
        volume's data for the next start."""
    def describe(self, volume: Volume) -> dict[str, object]: ...


@runtime_checkable
class DataWiper(Protocol):
    """A plugin whose volumes' data dies with the pod (an optional ability, as kubelet's
    deletable or recyclable interfaces are): its tear-down is a wipe that can be long,
    and is counted."""

    async def wipe(self, pod: PodRef, volume: Volume, progress: Progress) -> None:
        """Tear the volume down as :meth:`VolumePlugin.tear_down` does, counting each
        entry removed in ``progress`` (idempotent)."""


@runtime_checkable
class BatchPreparer(Protocol):
    """A plugin that can do the slow part of many volumes' set-up in one go (an optional
    ability): at a start, one worker-thread job for every volume, not one per volume."""

    async def prepare(self, volumes: list[tuple[PodRef, Volume]]) -> None:
        """Do now what :meth:`VolumePlugin.set_up` of these volumes would do in a thread.
        Only while no volume is served (before the mount): nothing may change them
        between this and their set-up."""

    def unprepare(self) -> None:
        """Forget what :meth:`prepare` did and no set-up used."""


@dataclass(frozen=True)
class EmptyDirPlugin:
    """Scratch space born empty with its pod and wiped with it.

    Medium "" lives under the state dir's ``pods/`` (so on whatever filesystem
    holds the state dir, as kubelet's lives on whatever holds its root dir);
    medium "Memory" under a tmpfs directory, which needs no mount privilege.
    """

    disk_dir: Path
    memory_dir: Path
    source_kind: str = "emptyDir"
    kind_dir: str = EMPTY_DIR_KIND
    # Bytes each volume directory held, measured by prepare() for the set-up to come.
    _prepared: dict[Path, int] = field(default_factory=dict, compare=False, repr=False)

    def base_dir(self, pod_uid: str, volume: Volume) -> Path:
        assert volume.empty_dir is not None
        top = self.memory_dir if volume.empty_dir.medium == "Memory" else self.disk_dir
        return top / pod_uid / self.kind_dir / volume.name

    def check(self, volume: Volume) -> None:
        return None  # the manifest's validation already covered all an EmptyDir needs

    async def set_up(self, pod: PodRef, volume: Volume, read_only: bool) -> Store:
        # read_only is for the runtime's bind mounts: the pod's own scratch space
        # stays writable through volfs, as kubelet's does on the host.
        assert volume.empty_dir is not None
        path = self.base_dir(pod.uid, volume)
        used = self._prepared.pop(path, None)
        if used is None:
            used = await trio.to_thread.run_sync(_make_or_measure, path)
        usage = Usage(limit=volume.empty_dir.size_limit_bytes(), used=used)
        return LocalStore(path, usage, cache_timeout=EMPTY_DIR_CACHE_SECONDS)

    async def prepare(self, volumes: list[tuple[PodRef, Volume]]) -> None:
        # A thread job per volume costs more than measuring a small one (3,000 of them
        # made a start with 1,000 pods wait ~0.4 s): one job measures them all. Safe
        # because the daemon prepares before it mounts: no write can reach a volume
        # between its measure and its set-up.
        paths = [self.base_dir(pod.uid, v) for pod, v in volumes if v.empty_dir is not None]
        self._prepared.update(await trio.to_thread.run_sync(_measure_all, paths))

    def unprepare(self) -> None:
        self._prepared.clear()

    async def tear_down(self, pod: PodRef, volume: Volume) -> None:
        await self.wipe(pod, volume, Progress(f"Deleting volume {volume.name}"))

    async def wipe(self, pod: PodRef, volume: Volume, progress: Progress) -> None:
        path = self.base_dir(pod.uid, volume)
        await trio.to_thread.run_sync(remove_tree, path, progress)
        for parent in (path.parent, path.parent.parent):  # <uid>/<kind>, then <uid>
            _remove_if_empty(parent)

    async def close(self) -> None:
        return None  # a LocalStore holds descriptors only, closed with the process

    def describe(self, volume: Volume) -> dict[str, object]:
        assert volume.empty_dir is not None
        return {"medium": volume.empty_dir.medium or "",
                "sizeLimitBytes": volume.empty_dir.size_limit_bytes()}


def _make_or_measure(path: Path) -> int:
    """Create the volume directory (mode 0777, as kubelet makes it) or measure what it holds."""
    if path.is_dir():
        return scan_usage(str(path))
    for private in (path.parent.parent, path.parent):  # <uid>, then <uid>/<kind>
        private.mkdir(mode=0o700, exist_ok=True)
    path.mkdir(exist_ok=True)
    os.chmod(path, 0o777)
    return 0


def _measure_all(paths: list[Path]) -> dict[Path, int]:
    """:func:`_make_or_measure` of each path; one that fails is left out (its set-up
    tries again, and reports the error as its own)."""
    measured = {}
    for path in paths:
        with contextlib.suppress(OSError):
            measured[path] = _make_or_measure(path)
    return measured


def _remove_if_empty(path: Path) -> None:
    with contextlib.suppress(OSError):  # not empty, or already gone
        path.rmdir()


class PluginRegistry:
    """Finds the plugin for a volume; refuses kinds no plugin serves."""

    def __init__(self, plugins: list[VolumePlugin]) -> None:
        self._by_kind: dict[str, VolumePlugin] = {}
        for plugin in plugins:
            if plugin.source_kind in self._by_kind:
                raise ValueError(f"two plugins for volume kind {plugin.source_kind}")
            self._by_kind[plugin.source_kind] = plugin

    def find(self, volume: Volume) -> VolumePlugin | None:
        return self._by_kind.get(volume.source_kind())

    def supported(self) -> list[str]:
        return sorted(self._by_kind)

    async def close(self) -> None:
        """Close every plugin (the daemon stops); a failure is logged, the rest still close."""
        for kind, plugin in self._by_kind.items():
            try:
                await plugin.close()
            except Exception:
                log.exception("closing the %s volume plugin failed", kind)
