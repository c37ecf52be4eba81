"""LocalStore: an inode-based passthrough to a directory of this host.

EmptyDir (on disk or on tmpfs) and HostPath are this one store over different
base directories; what differs between them is policy (create, wipe, check),
which lives in the lifecycle layer, not here.

Every inode the kernel knows is held as an ``O_PATH`` descriptor (the handle),
and every call works relative to descriptors (``openat``, ``mkdirat``, ...), as
libfuse's passthrough_hp does. So a path's length never matters, a rename
elsewhere never leaves us pointing at the wrong file, and two hard links are
one inode with one set of attributes. Nothing here ever follows a symlink: the
kernel resolves symlinks itself, in the caller's view of the tree.

The calls are plain syscalls on local disk, made on the event loop: each is a
few microseconds, cheaper than a hop to a worker thread. Only ``fsync`` (which
may wait for the disk) goes to a thread.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import trio

from volfs.stores import syscalls
from volfs.stores.base import AttrChanges, Entry, FileHandle, Owner
from volfs.stores.quota import QuotaExceeded, Usage

_PATH_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
# Flags the kernel has already acted on, or that make no sense on a reopen
# (O_NOFOLLOW would refuse the /proc/self/fd magic link we reopen through).
# O_DIRECT is served by the kernel bypassing its page cache (FOPEN_DIRECT_IO);
# on the backing file it would demand aligned buffers that Python cannot give.
_OPEN_STRIP = os.O_CREAT | os.O_EXCL | os.O_NOCTTY | os.O_NOFOLLOW | os.O_DIRECT


def _proc(fd: int) -> bytes:
    """The /proc path that reopens the very inode ``fd`` names."""
    return b"/proc/self/fd/%d" % fd


def _key(st: os.stat_result) -> Hashable:
    return (st.st_dev, st.st_ino)


@dataclass
class _OpenFile:
    fd: int
    key: Hashable
    append: bool


class LocalStore:
    """One volume's bytes in a directory of this host (see the module docstring)."""

    def __init__(self, base: str | os.PathLike[str], usage: Usage | None = None, *,
                 read_only: bool = False, cache_timeout: float = 1.0,
                 track_usage: bool = True) -> None:
        self.base = os.fsencode(base)
        self.usage = usage or Usage()
        # A host directory is changed behind our back and may be huge: its usage
        # is neither measured nor limited, and its writes skip the accounting.
        self.track_usage = track_usage
        self.read_only = read_only
        self.cache_timeout = cache_timeout
        self._files: dict[FileHandle, _OpenFile] = {}
        self._open_count: dict[Hashable, int] = {}
        # Inodes whose last name is gone while still open: their bytes stay
        # stored, and counted, until the last descriptor is released.
        self._orphans: set[Hashable] = set()

    # -- names -----------------------------------------------------------------

    async def open_root(self) -> Entry:
        # The root is a directory, or (a HostPath of type File) a single file.
        return self._entry(os.open(self.base, _PATH_FLAGS))

    async def lookup(self, parent: int, name: bytes) -> Entry:
        return self._entry(os.open(name, _PATH_FLAGS, dir_fd=parent))

    def forget(self, handle: int) -> None:
        os.close(handle)

    async def getattr(self, handle: int) -> os.stat_result:
        return os.fstat(handle)

    async def readlink(self, handle: int) -> bytes:
        return os.readlink(b"", dir_fd=handle)

    async def listdir(self, handle: int) -> Sequence[bytes]:
        fd = os.open(_proc(handle), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            return [os.fsencode(name) for name in os.listdir(fd)]
        finally:
            os.close(fd)

    # -- attributes ------------------------------------------------------------

    async def setattr(self, handle: int, changes: AttrChanges,
                      fh: FileHandle | None) -> os.stat_result:
        if changes.size is not None:
            self._truncate(handle, fh, changes.size)
        if changes.uid is not None or changes.gid is not None:
            syscalls.fchown_inode(handle, _or_keep(changes.uid), _or_keep(changes.gid))
        if changes.mode is not None:
            os.chmod(_proc(handle), stat.S_IMODE(changes.mode))
        if changes.atime_ns is not None or changes.mtime_ns is not None:
            syscalls.utimens_inode(handle, changes.atime_ns, changes.mtime_ns)
        return os.fstat(handle)

    def _truncate(self, handle: int, fh: FileHandle | None, size: int) -> None:
        if not self.track_usage:
            if fh is not None:
                os.ftruncate(fh, size)
            else:
                os.truncate(_proc(handle), size)
            return
        before = os.fstat(handle)
        growth = size - before.st_size
        self.usage.require(growth)
        if fh is not None:
            os.ftruncate(self._files[fh].fd, size)
        else:
            os.truncate(_proc(handle), size)
        if stat.S_ISREG(before.st_mode):
            self.usage.grow(growth)

    # -- making and removing names ---------------------------------------------

    async def mknod(self, parent: int, name: bytes, mode: int, rdev: int,
                    owner: Owner) -> Entry:
        os.mknod(name, mode, rdev, dir_fd=parent)
        return self._adopt(parent, name, owner, mode)

    async def mkdir(self, parent: int, name: bytes, mode: int, owner: Owner) -> Entry:
        os.mkdir(name, mode, dir_fd=parent)
        return self._adopt(parent, name, owner, mode)

    async def symlink(self, parent: int, name: bytes, target: bytes, owner: Owner) -> Entry:
        os.symlink(target, name, dir_fd=parent)
        return self._adopt(parent, name, owner, None)

    async def unlink(self, parent: int, name: bytes) -> None:
        gone = os.stat(name, dir_fd=parent, follow_symlinks=False) if self.track_usage else None
        os.unlink(name, dir_fd=parent)
        if gone is not None:
            self._name_removed(gone)

    async def rmdir(self, parent: int, name: bytes) -> None:
        os.rmdir(name, dir_fd=parent)

    async def rename(self, old_parent: int, old_name: bytes, new_parent: int,
                     new_name: bytes, flags: int) -> None:
        replaced = None
        if self.track_usage and not flags & syscalls.RENAME_EXCHANGE:
            replaced = _lstat_or_none(new_parent, new_name)
            moved = os.stat(old_name, dir_fd=old_parent, follow_symlinks=False)
            if replaced is not None and _key(replaced) == _key(moved):
                replaced = None  # two names of one inode: rename(2) does nothing
        syscalls.renameat2(old_parent, old_name, new_parent, new_name, flags)
        if replaced is not None:
            self._name_removed(replaced)

    async def link(self, handle: int, new_parent: int, new_name: bytes) -> os.stat_result:
        os.link(_proc(handle), new_name, dst_dir_fd=new_parent, follow_symlinks=True)
        return os.fstat(handle)

    def _adopt(self, parent: int, name: bytes, owner: Owner, mode: int | None) -> Entry:
        """Hand a just-made object to its caller, as the kernel would have made it.

        We run as root, so the object is root's: give it the caller's uid, and
        the caller's gid unless the directory is setgid (then the kernel gave it
        the directory's group, which is right). chown(2) clears setuid/setgid,
        so put back the bits the caller asked for.
        """
        fd = os.open(name, _PATH_FLAGS, dir_fd=parent)
        try:
            setgid_dir = os.fstat(parent).st_mode & stat.S_ISGID
            syscalls.fchown_inode(fd, owner.uid, -1 if setgid_dir else owner.gid)
            if mode is not None and mode & (stat.S_ISUID | stat.S_ISGID):
                os.chmod(_proc(fd), stat.S_IMODE(mode))
            return self._entry(fd)
        except BaseException:
            os.close(fd)
            raise

    def _name_removed(self, gone: os.stat_result) -> None:
        """Account for a name that no longer exists (unlink, or replaced by rename)."""
        if not stat.S_ISREG(gone.st_mode) or gone.st_nlink > 1:
            return
        if self._open_count.get(_key(gone)):
            self._orphans.add(_key(gone))
        else:
            self.usage.grow(-gone.st_size)

    # -- open files --------------------------------------------------------------

    async def open(self, handle: int, flags: int) -> FileHandle:
        flags &= ~_OPEN_STRIP
        truncated = os.fstat(handle).st_size if flags & os.O_TRUNC else 0
        fd = os.open(_proc(handle), flags | os.O_CLOEXEC)
        self.usage.grow(-truncated)
        return self._register(fd, flags)

    async def create(self, parent: int, name: bytes, mode: int, flags: int,
                     owner: Owner) -> tuple[FileHandle, Entry]:
        flags = (flags & ~os.O_DIRECT) | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            # Always exclusive: only a file made here is the caller's to own.
            fd = os.open(name, flags | os.O_EXCL, mode, dir_fd=parent)
        except FileExistsError:
            if flags & os.O_EXCL:
                raise
            return await self._open_existing(parent, name, flags)
        fh = self._register(fd, flags)
        try:
            return fh, self._adopt(parent, name, owner, mode)
        except BaseException:
            await self.release(fh)
            raise

    async def _open_existing(self, parent: int, name: bytes,
                             flags: int) -> tuple[FileHandle, Entry]:
        """A create (without O_EXCL) of a name that exists after all.

        The kernel asks to create a name it believes absent, but something may have
        made it meanwhile (the host, behind a HostPath). open(2) would open that
        file as it is: its owner and mode are not the caller's to change.
        """
        entry = await self.lookup(parent, name)
        try:
            fh = await self.open(entry.handle, flags)
            return fh, Entry(entry.handle, os.fstat(entry.handle))
        except BaseException:
            self.forget(entry.handle)
            raise

    def _register(self, fd: int, flags: int) -> FileHandle:
        key = _key(os.fstat(fd))
        self._files[fd] = _OpenFile(fd, key, bool(flags & os.O_APPEND))
        self._open_count[key] = self._open_count.get(key, 0) + 1
        return fd

    async def read(self, fh: FileHandle, offset: int, size: int) -> bytes:
        return os.pread(fh, size, offset)

    async def write(self, fh: FileHandle, offset: int, data: bytes) -> int:
        """Store what fits under the limit: a short write, then ENOSPC, as a full disk does."""
        if not self.track_usage:
            return os.pwrite(fh, data, offset)
        file = self._files[fh]
        size = os.fstat(fh).st_size
        start = size if file.append else offset
        growth = max(0, start + len(data) - size)
        admitted = self.usage.admit(growth)
        if admitted < growth:
            # The file may grow to size + admitted: keep the bytes that end there. A
            # write that starts past that point (a hole first) stores nothing at all.
            data = data[: max(0, size + admitted - start)]
            if not data:
                raise QuotaExceeded()
        written = os.pwrite(fh, data, offset)
        self.usage.grow(max(0, start + written - size))
        return written

    async def flush(self, fh: FileHandle) -> None:
        return None  # every write already reached the backing file

    async def fsync(self, fh: FileHandle, datasync: bool) -> None:
        sync = os.fdatasync if datasync else os.fsync
        await trio.to_thread.run_sync(sync, fh)

    async def release(self, fh: FileHandle) -> None:
        file = self._files.pop(fh)
        remaining = self._open_count[file.key] - 1
        if remaining:
            self._open_count[file.key] = remaining
        else:
            del self._open_count[file.key]
            if file.key in self._orphans:
                self._orphans.discard(file.key)
                self.usage.grow(-os.fstat(fh).st_size)
        os.close(fh)

    # -- extended attributes -----------------------------------------------------

    async def setxattr(self, handle: int, name: bytes, value: bytes) -> None:
        os.setxattr(_proc(handle), name, value)

    async def getxattr(self, handle: int, name: bytes) -> bytes:
        return os.getxattr(_proc(handle), name)

    async def listxattr(self, handle: int) -> Sequence[bytes]:
        return [os.fsencode(name) for name in os.listxattr(_proc(handle))]

    async def removexattr(self, handle: int, name: bytes) -> None:
        os.removexattr(_proc(handle), name)

    async def statfs(self) -> os.statvfs_result:
        return os.statvfs(self.base)

    # -- helpers -----------------------------------------------------------------

    @staticmethod
    def _entry(fd: int) -> Entry:
        try:
            return Entry(fd, os.fstat(fd))
        except BaseException:
            os.close(fd)
            raise


def _or_keep(value: int | None) -> int:
    return -1 if value is None else value


def _lstat_or_none(parent: int, name: bytes) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return None


