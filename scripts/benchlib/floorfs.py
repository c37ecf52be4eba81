"""floorfs: the least a pyfuse3 passthrough filesystem can do, as the floor of volfs's stack.

    python -m scripts.benchlib.floorfs SOURCE MOUNTPOINT    # serves until SIGINT/SIGTERM

`scripts/bench local` mounts it beside volfs: whatever volfs costs above floorfs is
volfs's own work; what floorfs costs above native is FUSE, libfuse, pyfuse3 and trio.
It mounts with volfs's options (volfs.fs.mount.MOUNT_OPTIONS, under its own fsname) and
gives the kernel the same one-second entry and attribute timeouts as volfs's local store.

What it skips, on purpose: lookup counts (an inode's path is kept until unmount), xattrs
(ENOSYS, so the kernel stops asking), locks, hard-link bookkeeping beyond one path, and
any check of its own (default_permissions lets the kernel check). Every call is a plain
blocking syscall in the event loop: local disk and tmpfs answer fast enough, and that is
the cheapest a handler gets.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pyfuse3
import trio

from volfs.fs.mount import MOUNT_OPTIONS

TIMEOUT = 1.0  # seconds, as volfs's LocalStore.cache_timeout
OPTIONS = ({option for option in MOUNT_OPTIONS if not option.startswith(("fsname=", "subtype="))}
           | {"fsname=floorfs", "subtype=floorfs"})

T = TypeVar("T")


def _sys(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """One syscall, its OSError as the FUSEError the kernel gets."""
    try:
        return call(*args, **kwargs)
    except OSError as exc:
        raise pyfuse3.FUSEError(exc.errno or errno.EIO) from None


class FloorFS(pyfuse3.Operations):
    """A passthrough of ``source``: inode numbers are the source's, paths kept in a dict."""

    enable_writeback_cache = False

    def __init__(self, source: Path) -> None:
        super().__init__()
        self.paths: dict[int, str] = {pyfuse3.ROOT_INODE: str(source)}
        self.dirs: dict[int, list[tuple[bytes, os.stat_result]]] = {}
        self.dir_paths: dict[int, str] = {}
        self.next_dir = 1

    # -- names -------------------------------------------------------------------------

    def _path(self, inode: int, name: bytes | None = None) -> str:
        base = self.paths.get(inode)
        if base is None:
            raise pyfuse3.FUSEError(errno.ESTALE)
        return base if name is None else os.path.join(base, os.fsdecode(name))

    def _entry(self, path: str) -> pyfuse3.EntryAttributes:
        st = _sys(os.lstat, path)
        ino = pyfuse3.ROOT_INODE if path == self.paths[pyfuse3.ROOT_INODE] else st.st_ino
        self.paths[ino] = path
        return _attributes(ino, st)

    async def lookup(self, parent_inode: int, name: bytes,
                     ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        return self._entry(self._path(parent_inode, name))

    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        return self._entry(self._path(inode))

    async def setattr(self, inode: int, attr: pyfuse3.EntryAttributes,
                      fields: pyfuse3.SetattrFields, fh: int | None,
                      ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        path = self._path(inode)
        if fields.update_size:
            _sys(os.truncate, fh if fh is not None else path, attr.st_size)
        if fields.update_mode:
            _sys(os.chmod, path, attr.st_mode & 0o7777)
        if fields.update_uid or fields.update_gid:
            _sys(os.lchown, path, attr.st_uid if fields.update_uid else -1,
                 attr.st_gid if fields.update_gid else -1)
        if fields.update_atime or fields.update_mtime:
            st = _sys(os.lstat, path)
            _sys(os.utime, path, ns=(
                attr.st_atime_ns if fields.update_atime else st.st_atime_ns,
                attr.st_mtime_ns if fields.update_mtime else st.st_mtime_ns),
                 follow_symlinks=False)
        return self._entry(path)

    async def readlink(self, inode: int, ctx: pyfuse3.RequestContext) -> bytes:
        return os.fsencode(_sys(os.readlink, self._path(inode)))

    async def mkdir(self, parent_inode: int, name: bytes, mode: int,
                    ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        path = self._path(parent_inode, name)
        _sys(os.mkdir, path, mode)
        _sys(os.lchown, path, ctx.uid, ctx.gid)
        return self._entry(path)

    async def symlink(self, parent_inode: int, name: bytes, target: bytes,
                      ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        path = self._path(parent_inode, name)
        _sys(os.symlink, os.fsdecode(target), path)
        _sys(os.lchown, path, ctx.uid, ctx.gid)
        return self._entry(path)

    async def unlink(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        _sys(os.unlink, self._path(parent_inode, name))

    async def rmdir(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        _sys(os.rmdir, self._path(parent_inode, name))

    async def rename(self, parent_inode_old: int, name_old: bytes, parent_inode_new: int,
                     name_new: bytes, flags: int, ctx: pyfuse3.RequestContext) -> None:
        if flags:
            raise pyfuse3.FUSEError(errno.EINVAL)
        old, new = self._path(parent_inode_old, name_old), self._path(parent_inode_new, name_new)
        _sys(os.rename, old, new)
        self._entry(new)  # a moved directory's children keep stale paths: the floor skips that

    # -- files -------------------------------------------------------------------------

    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        return pyfuse3.FileInfo(fh=_sys(os.open, self._path(inode), flags & ~os.O_CREAT))

    async def create(self, parent_inode: int, name: bytes, mode: int, flags: int,
                     ctx: pyfuse3.RequestContext) -> tuple[pyfuse3.FileInfo,
                                                           pyfuse3.EntryAttributes]:
        path = self._path(parent_inode, name)
        fd = _sys(os.open, path, flags | os.O_CREAT | os.O_TRUNC, mode)
        _sys(os.fchown, fd, ctx.uid, ctx.gid)
        return pyfuse3.FileInfo(fh=fd), self._entry(path)

    async def read(self, fh: int, off: int, size: int) -> bytes:
        return _sys(os.pread, fh, size, off)

    async def write(self, fh: int, off: int, buf: bytes) -> int:
        return _sys(os.pwrite, fh, buf, off)

    async def fsync(self, fh: int, datasync: bool) -> None:
        _sys(os.fdatasync if datasync else os.fsync, fh)

    async def release(self, fh: int) -> None:
        os.close(fh)

    # -- directories -------------------------------------------------------------------

    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        path = self._path(inode)
        entries = []
        with _sys(os.scandir, path) as listing:
            for entry in listing:
                entries.append((os.fsencode(entry.name), _sys(os.lstat, entry.path)))
        fh, self.next_dir = self.next_dir, self.next_dir + 1
        self.dirs[fh] = sorted(entries)
        self.dir_paths[fh] = path
        return fh

    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        parent = self.dir_paths[fh]
        for index, (name, st) in enumerate(self.dirs[fh][start_id:], start_id):
            if not pyfuse3.readdir_reply(token, name, _attributes(st.st_ino, st), index + 1):
                return
            # readdirplus hands the kernel these inodes without a lookup: keep their paths
            self.paths[st.st_ino] = os.path.join(parent, os.fsdecode(name))

    async def releasedir(self, fh: int) -> None:
        self.dirs.pop(fh, None)
        self.dir_paths.pop(fh, None)

    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        st = _sys(os.statvfs, self.paths[pyfuse3.ROOT_INODE])
        data = pyfuse3.StatvfsData()
        for name in ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files",
                     "f_ffree", "f_favail", "f_namemax"):
            setattr(data, name, getattr(st, name))
        return data


def _attributes(ino: int, st: os.stat_result) -> pyfuse3.EntryAttributes:
    attrs = pyfuse3.EntryAttributes()
    for name in ("st_mode", "st_nlink", "st_uid", "st_gid", "st_rdev", "st_size",
                 "st_blksize", "st_blocks", "st_atime_ns", "st_mtime_ns", "st_ctime_ns"):
        setattr(attrs, name, getattr(st, name))
    attrs.st_ino = ino
    attrs.generation = 0
    attrs.entry_timeout = TIMEOUT
    attrs.attr_timeout = TIMEOUT
    return attrs


async def _serve(operations: FloorFS) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(pyfuse3.main)
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                nursery.cancel_scope.cancel()
                return


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: floorfs SOURCE MOUNTPOINT", file=sys.stderr)
        return 2
    source, mountpoint = Path(argv[0]).resolve(), Path(argv[1])
    if not source.is_dir() or not mountpoint.is_dir():
        print(f"floorfs: {source} and {mountpoint} must be directories", file=sys.stderr)
        return 2
    operations = FloorFS(source)
    pyfuse3.init(operations, str(mountpoint), OPTIONS)
    try:
        trio.run(_serve, operations)
    finally:
        pyfuse3.close(unmount=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
