"""Opening NFS volumes, and the directory work that provisioning and reclaim need.

Everything here is a coroutine on the trio loop that never blocks it. Volumes on
one server (with the same ports and timeouts) share one connection, counted
and closed when the last of them is closed; the pool lives as long as the trio
run that made it.

    store = await open_store("10.0.0.5", "/srv/nfs/pv1", ["nfsvers=3", "soft"],
                             capacity_bytes=1 << 30)
    ...
    await store.close()

    await mkdirs("10.0.0.5", "/srv/nfs", "default/claim-1")
    await rename("10.0.0.5", "/srv/nfs", "default/claim-1", "archived-claim-1")
"""

from __future__ import annotations

import errno
import logging
import stat
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import trio

from volfs.stores.nfs import _libnfs as L
from volfs.stores.nfs.nfs3 import DirEntry, Nfs3, SetAttrs, mount
from volfs.stores.nfs.options import (
    DEFAULT_MOUNT_PORT,
    DEFAULT_NFS_PORT,
    NfsOptions,
    NfsTarget,
    split_relative,
)
from volfs.stores.nfs.rpc import RpcClient, ServerUnreachable, Timeouts
from volfs.stores.nfs.store import SILLY_PREFIX, NfsStore
from volfs.stores.progress import Progress
from volfs.stores.quota import Usage

log = logging.getLogger(__name__)

T = TypeVar("T")

SET_UP_SECONDS = 10.0  # the longest a volume set-up waits for a server that does not answer
_WALK_PARALLEL = 8
_PORTMAPPER_SECONDS = 1.0  # how long to look for a portmapper before trying mountd's port


# -- shared connections -----------------------------------------------------------------


@dataclass
class _Shared:
    nfs: Nfs3
    users: int = 0


class NfsClients:
    """Connections shared by the volumes of one server; see :func:`clients`."""

    def __init__(self) -> None:
        self._shared: dict[tuple[str, int, Timeouts], _Shared] = {}

    def acquire(self, target: NfsTarget) -> Nfs3:
        port = target.options.port or DEFAULT_NFS_PORT
        key = (target.server, port, target.options.timeouts)
        shared = self._shared.get(key)
        if shared is None:
            client = RpcClient(target.server, L.NFS_PROGRAM, L.NFS_V3, port,
                               target.options.timeouts, name=f"nfs {target.server}")
            shared = self._shared[key] = _Shared(Nfs3(client))
        shared.users += 1
        return shared.nfs

    def release(self, nfs: Nfs3) -> None:
        for key, shared in list(self._shared.items()):
            if shared.nfs is nfs:
                shared.users -= 1
                if shared.users <= 0:
                    del self._shared[key]
                    nfs.client.close()
                return

    def __len__(self) -> int:
        return len(self._shared)


_CLIENTS: trio.lowlevel.RunVar[NfsClients] = trio.lowlevel.RunVar("volfs_nfs_clients")


def clients() -> NfsClients:
    """This trio run's pool of shared connections."""
    try:
        return _CLIENTS.get()
    except LookupError:
        pool = NfsClients()
        _CLIENTS.set(pool)
        return pool


# -- finding the directory ------------------------------------------------------------------


async def _mount(target: NfsTarget, export: str, deadline: float) -> bytes:
    options = target.options
    if options.mount_port is not None:
        return await mount(target.server, export, options.mount_port, options.timeouts, deadline)
    try:  # ask the portmapper, as mount.nfs does; without one, mountd's usual port
        portmapper_deadline = min(deadline, trio.current_time() + _PORTMAPPER_SECONDS)
        return await mount(target.server, export, None, options.timeouts, portmapper_deadline)
    except ServerUnreachable:
        return await mount(target.server, export, DEFAULT_MOUNT_PORT, options.timeouts,
                           deadline)


async def resolve(nfs: Nfs3, target: NfsTarget, deadline: float) -> bytes:
    """The file handle of ``target.export``.

    The server is asked to mount it; if it will not (a directory inside an
    export need not be exported itself), the nearest parent it mounts is
    mounted and the rest looked up.
    """
    try:
        return await _mount(target, target.export, deadline)
    except ServerUnreachable:
        raise
    except OSError as refused:
        parts = [p for p in target.export.split("/") if p]
        for depth in range(len(parts) - 1, -1, -1):
            try:
                fh = await _mount(target, "/" + "/".join(parts[:depth]), deadline)
            except ServerUnreachable:
                raise
            except OSError:
                continue
            for name in parts[depth:]:
                try:
                    fh, attrs = await nfs.lookup(fh, name.encode())
                except FileNotFoundError:
                    raise FileNotFoundError(errno.ENOENT,
                                            "no such directory on the server") from None
                if attrs is not None and not stat.S_ISDIR(attrs.st_mode):
                    raise NotADirectoryError(errno.ENOTDIR, "not a directory") from None
            return fh
        raise OSError(refused.errno, f"the server refused to mount it "
                                     f"({refused.strerror})") from None


class _Session:
    """A connection from the pool and the root handle of one share, for a few calls."""

    def __init__(self, target: NfsTarget, timeout: float = SET_UP_SECONDS) -> None:
        self.target = target
        self.timeout = timeout
        self.nfs = clients().acquire(target)
        self.root = b""

    async def __aenter__(self) -> _Session:
        try:
            deadline = trio.current_time() + min(self.target.options.timeouts.total,
                                                 self.timeout)
            self.root = await resolve(self.nfs, self.target, deadline)
        except BaseException:
            clients().release(self.nfs)
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        clients().release(self.nfs)

    async def walk(self, parts: Sequence[str]) -> bytes:
        fh = self.root
        for name in parts:
            fh, _ = await self.nfs.lookup(fh, name.encode())
        return fh


def _target(server: str, share: str, mount_options: Iterable[str]) -> NfsTarget:
    return NfsTarget.parse(server, share, mount_options)


# -- volumes -----------------------------------------------------------------------------------


async def open_store(server: str, path: str, mount_options: Iterable[str] = (),
                     capacity_bytes: int | None = None, read_only: bool = False, *,
                     sub_dir: str = "", set_up_seconds: float = SET_UP_SECONDS) -> NfsStore:
    """An NfsStore serving ``server:path`` (and ``sub_dir`` below it, if given).

    The server must answer within ``set_up_seconds`` (or the mount options'
    soft bound, if shorter): otherwise ServerUnreachable, whose ``str()`` is
    ``server not responding (<reason>)``. A missing directory is
    FileNotFoundError, a bad mount option ``OptionError`` (a ValueError).

    With ``capacity_bytes``, usage is measured by walking the directory now and
    enforced from then on (ENOSPC, nothing stored past the limit); without it,
    usage is neither measured nor limited. ``read_only`` (or the ``ro`` mount
    option) makes the store refuse every change. Close it with ``store.close()``.
    """
    target = _target(server, path, mount_options).below(sub_dir)
    pool = clients()
    nfs = pool.acquire(target)
    try:
        deadline = trio.current_time() + min(target.options.timeouts.total, set_up_seconds)
        root = await resolve(nfs, target, deadline)
        info = await _bounded(nfs.fsinfo(root), deadline, target)
        attrs = await _bounded(nfs.getattr(root), deadline, target)
        if not stat.S_ISDIR(attrs.st_mode):
            raise NotADirectoryError(errno.ENOTDIR, "not a directory")
        track = capacity_bytes is not None
        used = await measure_tree(nfs, root) if track else 0
    except BaseException:
        pool.release(nfs)
        raise

    async def release() -> None:
        pool.release(nfs)

    return NfsStore(nfs, root, info, usage=Usage(limit=capacity_bytes, used=used),
                    track_usage=track, read_only=read_only or target.options.read_only,
                    name=str(target), on_close=release)


async def _bounded(call: Awaitable[T], deadline: float, target: NfsTarget) -> T:
    """A set-up call, which may not outlast the set-up's deadline."""
    with trio.move_on_at(deadline):
        return await call
    raise ServerUnreachable("timed out")


async def check_server(server: str, path: str, mount_options: Iterable[str] = (),
                       timeout: float = SET_UP_SECONDS) -> None:
    """Raise ServerUnreachable unless the server mounts ``path`` within ``timeout`` seconds."""
    async with _Session(_target(server, path, mount_options), timeout):
        pass


# -- directories on a share (provisioning and reclaim) --------------------------------------


async def mkdirs(server: str, share: str, subdir: str, mount_options: Iterable[str] = (),
                 mode: int = 0o777) -> None:
    """Make ``subdir`` (nested: ``a/b/c``) below the share's root, parents too; no error
    if it exists. New directories get ``mode`` exactly (no umask), owned by root."""
    parts = split_relative(subdir)
    async with _Session(_target(server, share, mount_options)) as session:
        fh = session.root
        for name in parts:
            try:
                made = await session.nfs.mkdir(fh, name.encode(), SetAttrs(mode=mode))
                child = made.fh
                if child is None:
                    child, _ = await session.nfs.lookup(fh, name.encode())
                await session.nfs.setattr(child, SetAttrs(mode=mode))  # past the server's umask
                fh = child
            except FileExistsError:
                fh, attrs = await session.nfs.lookup(fh, name.encode())
                if attrs is not None and not stat.S_ISDIR(attrs.st_mode):
                    raise NotADirectoryError(errno.ENOTDIR,
                                             f"{server}:{share}/{subdir}: {name} is not "
                                             f"a directory") from None


async def remove_tree(server: str, share: str, subdir: str,
                      mount_options: Iterable[str] = (), progress: Progress | None = None
                      ) -> None:
    """Remove ``subdir`` and everything below it; nothing to do if it is gone already.
    The share's root itself is never removed (ValueError for an empty ``subdir``). Each
    entry below ``subdir`` is counted in ``progress`` as it goes."""
    parts = split_relative(subdir)
    if not parts:
        raise ValueError("remove_tree: refusing to remove the root of the share")
    async with _Session(_target(server, share, mount_options)) as session:
        try:
            parent = await session.walk(parts[:-1])
            fh, attrs = await session.nfs.lookup(parent, parts[-1].encode())
        except FileNotFoundError:
            return
        if attrs is not None and not stat.S_ISDIR(attrs.st_mode):
            await session.nfs.remove(parent, parts[-1].encode())
            return
        await _empty(session.nfs, fh, progress)
        await session.nfs.rmdir(parent, parts[-1].encode())


async def scrub(server: str, share: str, subdir: str, mount_options: Iterable[str] = (),
                progress: Progress | None = None) -> None:
    """Remove everything inside ``subdir`` (the share's root for ``""``), keeping the
    directory itself: what a Recycle reclaim does. Each entry removed is counted in
    ``progress``."""
    parts = split_relative(subdir)
    async with _Session(_target(server, share, mount_options)) as session:
        await _empty(session.nfs, await session.walk(parts), progress)


async def rename(server: str, share: str, old: str, new: str,
                 mount_options: Iterable[str] = ()) -> None:
    """Rename ``old`` to ``new`` (both relative to the share; nested paths allowed; the
    new parent directories are made). FileExistsError if ``new`` exists."""
    old_parts, new_parts = split_relative(old), split_relative(new)
    if not old_parts or not new_parts:
        raise ValueError("rename: the share's root cannot be renamed")
    if new_parts[:-1]:
        await mkdirs(server, share, "/".join(new_parts[:-1]), mount_options)
    async with _Session(_target(server, share, mount_options)) as session:
        old_parent = await session.walk(old_parts[:-1])
        new_parent = await session.walk(new_parts[:-1])
        try:
            await session.nfs.lookup(new_parent, new_parts[-1].encode())
        except FileNotFoundError:
            pass
        else:
            raise FileExistsError(errno.EEXIST, f"{server}:{share}/{new}: exists")
        await session.nfs.rename(old_parent, old_parts[-1].encode(), new_parent,
                                 new_parts[-1].encode())


async def usage(server: str, share: str, subdir: str = "",
                mount_options: Iterable[str] = ()) -> int:
    """Bytes in the regular files below ``subdir``, each file counted once (as Usage counts)."""
    async with _Session(_target(server, share, mount_options)) as session:
        return await measure_tree(session.nfs, await session.walk(split_relative(subdir)))


class NfsShares:
    """Directory work on shares for the NFS PV-source plugin (its ``ShareOps``): every call
    mounts ``server:share``, does its work and lets go."""

    async def make_dir(self, server: str, share: str, sub_dir: str,
                       mount_options: list[str]) -> None:
        await mkdirs(server, share, sub_dir, mount_options)

    async def remove_dir(self, server: str, share: str, sub_dir: str,
                         mount_options: list[str], progress: Progress | None = None) -> None:
        await remove_tree(server, share, sub_dir, mount_options, progress)

    async def rename_dir(self, server: str, share: str, sub_dir: str, new_sub_dir: str,
                         mount_options: list[str]) -> None:
        await rename(server, share, sub_dir, new_sub_dir, mount_options)

    async def scrub_dir(self, server: str, path: str, mount_options: list[str],
                        progress: Progress | None = None) -> None:
        await scrub(server, path, "", mount_options, progress)


async def _empty(nfs: Nfs3, directory: bytes, progress: Progress | None = None) -> None:
    """Remove everything in a directory, depth first, a few directories at a time,
    counting each entry removed in ``progress``."""
    limiter = trio.CapacityLimiter(_WALK_PARALLEL)
    counted = progress if progress is not None else Progress("Emptying a directory")

    async def empty(fh: bytes) -> None:
        async with limiter:
            entries = await nfs.readdir(fh)
        async with trio.open_nursery() as nursery:
            for entry in entries:
                nursery.start_soon(remove, fh, entry)

    async def remove(parent: bytes, entry: DirEntry) -> None:
        child, attrs = entry.fh, entry.attrs
        try:
            if child is None or attrs is None:
                child, attrs = await nfs.lookup(parent, entry.name)
            if attrs is not None and stat.S_ISDIR(attrs.st_mode):
                await empty(child)
                await nfs.rmdir(parent, entry.name)
            else:
                await nfs.remove(parent, entry.name)
            counted.add()
        except FileNotFoundError:
            pass  # gone meanwhile

    await empty(directory)


async def measure_tree(nfs: Nfs3, directory: bytes) -> int:
    """The usage of the tree at ``directory``: a walk over READDIRPLUS, on the loop (each
    reply is a network wait, not CPU), a few directories at a time."""
    limiter = trio.CapacityLimiter(_WALK_PARALLEL)
    seen: set[tuple[int, int]] = set()
    total = 0

    async def walk(fh: bytes) -> None:
        nonlocal total
        async with limiter:
            entries = await nfs.readdir(fh)
        async with trio.open_nursery() as nursery:
            for entry in entries:
                attrs = entry.attrs
                if attrs is None and entry.fh is not None:
                    attrs = await nfs.getattr(entry.fh)
                if attrs is None:
                    continue
                if stat.S_ISDIR(attrs.st_mode) and entry.fh is not None:
                    nursery.start_soon(walk, entry.fh)
                elif stat.S_ISREG(attrs.st_mode) and (attrs.st_dev, attrs.st_ino) not in seen:
                    seen.add((attrs.st_dev, attrs.st_ino))
                    total += attrs.st_size

    await walk(directory)
    return total


__all__ = ["NfsClients", "NfsShares", "NfsOptions", "NfsTarget", "SILLY_PREFIX", "SET_UP_SECONDS",
           "ServerUnreachable", "check_server", "clients", "measure_tree", "mkdirs",
           "open_store", "remove_tree", "rename", "resolve", "scrub", "usage"]
