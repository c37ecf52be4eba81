"""HostPath: passthrough to a directory or file of the host, with kubelet's checks.

Policy only: the bytes are served by the same LocalStore as an EmptyDir's. A
host path must lie under an allowed prefix (judged on the *resolved* path, by
whole components, so ``/srv`` allows neither ``/srvx`` nor a symlink in
``/srv`` that leads to ``/etc``). Set-up checks the type as kubelet does and
creates no more than ``DirectoryOrCreate``/``FileOrCreate`` ask for; tear-down
never touches host data.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass

import trio

from volfs.api import HostPathVolumeSource, Volume
from volfs.lifecycle.volumes import PodRef, VolumeRefused
from volfs.stores.base import Store
from volfs.stores.local import LocalStore

HOST_PATH_KIND = "kubernetes.io~host-path"
# Others may change a host path behind our back: the kernel may trust what it
# cached of it for this long. This is the bound on how stale a view can be.
HOST_PATH_CACHE_SECONDS = 1.0

_FOUND = [
    (stat.S_ISDIR, "directory"), (stat.S_ISREG, "regular file"), (stat.S_ISSOCK, "socket"),
    (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
    (stat.S_ISFIFO, "FIFO"), (stat.S_ISLNK, "symlink"),
]
_EXPECTED = {
    "Directory": stat.S_ISDIR, "DirectoryOrCreate": stat.S_ISDIR,
    "Socket": stat.S_ISSOCK, "CharDevice": stat.S_ISCHR, "BlockDevice": stat.S_ISBLK,
}


class HostPathRefused(VolumeRefused):
    """A host path that may not or cannot be served; ``str()`` is one line."""

    field = "path"


@dataclass(frozen=True)
class AllowedPrefix:
    path: str  # resolved, absolute, no trailing slash (except "/")
    read_only: bool

    @classmethod
    def parse(cls, spec: str) -> AllowedPrefix:
        """``PREFIX`` or ``PREFIX:ro``, as given to ``--allow-host-path``."""
        path, _, mode = spec.rpartition(":") if spec.endswith((":ro", ":rw")) else (spec, "", "")
        if not os.path.isabs(path):
            raise ValueError(f"--allow-host-path {spec}: must be an absolute path")
        return cls(os.path.realpath(path), mode == "ro")

    def covers(self, resolved: str) -> bool:
        return self.path == "/" or resolved == self.path or resolved.startswith(self.path + "/")


class AllowList:
    def __init__(self, prefixes: Iterable[AllowedPrefix]) -> None:
        self.prefixes = list(prefixes)

    def match(self, path: str) -> tuple[str, bool]:
        """The resolved path and whether it must be read-only; HostPathRefused if not allowed.

        The longest matching prefix decides, so ``/srv:ro`` with ``/srv/rw`` lets
        the latter be written.
        """
        resolved = os.path.realpath(path)
        matches = [p for p in self.prefixes if p.covers(resolved)]
        if not matches:
            shown = path if resolved == path else f"{path} (which resolves to {resolved})"
            how = (f"volfs serve allows only {', '.join(p.path for p in self.prefixes)}"
                   if self.prefixes else "volfs serve allows no host paths")
            raise HostPathRefused(f"{shown} is not allowed: {how}; start it with "
                                  f"--allow-host-path PREFIX[:ro] to allow one")
        best = max(matches, key=lambda p: len(p.path))
        return resolved, best.read_only


@dataclass(frozen=True)
class HostPathPlugin:
    allow: AllowList
    source_kind: str = "hostPath"
    kind_dir: str = HOST_PATH_KIND

    def check(self, volume: Volume) -> None:
        """Refuse what needs no look at the disk; set-up checks the rest.

        Nothing here touches the filesystem: a host path may lead into a FUSE
        mount (volfs's own, even), and this runs on the event loop that serves it.
        """
        if not self.allow.prefixes:
            self.allow.match(_source(volume).path)  # refuses, saying how to allow

    async def set_up(self, pod: PodRef, volume: Volume, read_only: bool) -> Store:
        # Resolving, checking and creating touch the host's filesystems: in a
        # worker thread, so the loop keeps serving FUSE meanwhile.
        resolved, prefix_read_only = await trio.to_thread.run_sync(
            self._prepare, _source(volume))
        return LocalStore(resolved, read_only=read_only or prefix_read_only,
                          cache_timeout=HOST_PATH_CACHE_SECONDS, track_usage=False,
                          outside_writers=True)  # the host's processes

    def _prepare(self, source: HostPathVolumeSource) -> tuple[str, bool]:
        """Allow-list, type check, creation if asked: the resolved path and its ro-ness."""
        resolved, prefix_read_only = self.allow.match(source.path)
        inside = _volfs_mount_holding(resolved)
        if inside is not None:
            raise HostPathRefused(f"{source.path}: lies in a volfs mount ({inside}); volfs "
                                  "does not serve its own tree")
        _check_type(source, resolved, creating=False)
        _create_if_asked(source, resolved)
        _check_type(source, resolved, creating=True)
        return resolved, prefix_read_only

    async def close(self) -> None:
        return None  # a LocalStore holds descriptors only, closed with the process

    async def tear_down(self, pod: PodRef, volume: Volume) -> None:
        return None  # host data outlives every pod, whatever the type

    def describe(self, volume: Volume) -> dict[str, object]:
        source = _source(volume)
        return {"hostPath": source.path, "type": source.type}


def _volfs_mount_holding(path: str) -> str | None:
    """The volfs mount point at or above ``path``, if any (serving it would loop)."""
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            fields = line.split()
            separator = fields.index("-")
            mount_point = fields[4].replace("\\040", " ")
            if fields[separator + 1] == "fuse.volfs" and (
                    path == mount_point or path.startswith(mount_point.rstrip("/") + "/")):
                return mount_point
    return None


def _source(volume: Volume) -> HostPathVolumeSource:
    assert volume.host_path is not None
    return volume.host_path


def _create_if_asked(source: HostPathVolumeSource, resolved: str) -> None:
    if source.type == "DirectoryOrCreate" and not os.path.lexists(resolved):
        _make_dirs(resolved)
    elif source.type == "FileOrCreate" and not os.path.lexists(resolved):
        try:
            fd = os.open(resolved, os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except FileNotFoundError:
            raise HostPathRefused(f"{source.path}: FileOrCreate does not create the parent "
                                  f"directory {os.path.dirname(resolved)}") from None
        os.close(fd)
    elif source.type == "" and not os.path.lexists(resolved):
        # No check, as kubelet: the runtime would make a directory there.
        _make_dirs(resolved)


def _make_dirs(path: str) -> None:
    """kubelet's MkdirAll(path, 0755): every missing component 0755, parents too.

    (os.makedirs gives parents the process umask's mode, and the daemon's umask is 0.)
    """
    missing = []
    while not os.path.lexists(path):
        missing.append(path)
        path = os.path.dirname(path)
    for directory in reversed(missing):
        os.mkdir(directory, 0o755)
        os.chmod(directory, 0o755)


def _check_type(source: HostPathVolumeSource, resolved: str, creating: bool) -> None:
    """kubelet's checkType; ``creating`` says the *OrCreate types may still be missing."""
    kind = source.type
    try:
        st = os.stat(resolved)
    except FileNotFoundError:
        if not creating and kind in ("", "DirectoryOrCreate"):
            return
        if not creating and kind == "FileOrCreate":
            if not os.path.isdir(os.path.dirname(resolved)):
                raise HostPathRefused(f"{source.path}: FileOrCreate does not create the "
                                      f"parent directory {os.path.dirname(resolved)}") from None
            return
        raise HostPathRefused(f"{source.path}: expected {kind or 'a path'}, "
                              f"found nothing") from None
    if kind in _EXPECTED and not _EXPECTED[kind](st.st_mode):
        raise HostPathRefused(f"{source.path}: expected {kind}, found {_found(st.st_mode)}")
    if kind in ("File", "FileOrCreate") and stat.S_ISDIR(st.st_mode):
        raise HostPathRefused(f"{source.path}: expected {kind}, found directory")


def _found(mode: int) -> str:
    return next((name for test, name in _FOUND if test(mode)), "unknown file type")


def allowed_prefixes(specs: Iterable[str]) -> AllowList:
    return AllowList(AllowedPrefix.parse(spec) for spec in specs)


__all__ = ["AllowList", "AllowedPrefix", "HostPathPlugin", "HostPathRefused",
           "allowed_prefixes"]
