"""LocalStore: an inode-based passthrough to a directory of this host.

EmptyDir (on disk or on tmpfs) and HostPath are this one store over different
base directories; what differs between them is policy (create, wipe, check),
which lives in the lifecycle layer, not here.

Every inode the kernel knows is named by an ``O_PATH`` descriptor, and every
call works relative to descriptors (``openat``, ``mkdirat``, ...), as libfuse's
passthrough_hp does. So a path's length never matters, a rename elsewhere never
leaves us pointing at the wrong file, and two hard links are one inode with one
set of attributes. Nothing here ever follows a symlink: the kernel resolves
symlinks itself, in the caller's view of the tree.

The kernel keeps inodes for as long as it has memory, far more than a process
may hold descriptors (RLIMIT_NOFILE). So the handle of an inode (:class:`Inode`)
also keeps its file handle (``name_to_handle_at``), and one
:class:`DescriptorCache` for all stores keeps at most a share of the limit open:
the least recently used descriptors are closed and reopened by file handle
(``open_by_handle_at``, which never yields another inode: a deleted one is
ESTALE) when next needed. Inodes with open files keep their descriptors, and so
does every inode of a filesystem that makes no file handles.

The calls are plain syscalls on local disk, made on the event loop: each is a
few microseconds, cheaper than a hop to a worker thread. Only ``fsync`` (which
may wait for the disk) goes to a thread.
"""

from __future__ import annotations

import errno
import os
import resource
import stat
import weakref
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import trio

from volfs.stores import syscalls
from volfs.stores.base import AttrChanges, Entry, FileHandle, Owner, setid_bits_to_drop
from volfs.stores.quota import QuotaExceeded, Usage

_PATH_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
_SETID = stat.S_ISUID | stat.S_ISGID
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


class _Mount:
    """A directory descriptor on one filesystem, to reopen its file handles against.

    Closed when the last inode that may need it is gone.
    """

    __slots__ = ("fd", "__weakref__")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        weakref.finalize(self, os.close, fd)


class Inode:
    """A LocalStore handle: one inode, by descriptor while cached, by file handle always."""

    __slots__ = ("fd", "file_handle", "mount", "pins")

    def __init__(self, fd: int, file_handle: bytes | None, mount: _Mount | None) -> None:
        self.fd: int | None = fd
        self.file_handle = file_handle if mount is not None else None  # None: fd only
        self.mount = mount
        self.pins = 0  # open files: their inode keeps its descriptor

    @property
    def reopenable(self) -> bool:
        return self.file_handle is not None


def default_capacity() -> int:
    """A third of the descriptors this process may open; open files and sockets need the rest."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    return max(16, soft // 3)


class DescriptorCache:
    """The O_PATH descriptors of inodes, at most ``capacity`` of them idle and open at once.

    Shared by every LocalStore of the process, since the limit is the process's.
    Each use of a descriptor must fetch it with :meth:`fd` right then: a
    descriptor kept across another :meth:`fd` or a new inode may have been closed.
    """

    def __init__(self, capacity: int | None = None) -> None:
        self.capacity = default_capacity() if capacity is None else max(2, capacity)
        # Inodes whose descriptor is open and may be closed, least recently used first.
        self._idle: OrderedDict[Inode, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._idle)

    def add(self, inode: Inode) -> Inode:
        """A new inode, its descriptor open."""
        self._idle_again(inode)
        return inode

    def fd(self, inode: Inode) -> int:
        if inode.fd is None:
            assert inode.file_handle is not None and inode.mount is not None
            inode.fd = syscalls.open_by_handle(inode.mount.fd, inode.file_handle, _PATH_FLAGS)
            self._idle_again(inode)
        elif inode in self._idle:
            self._idle.move_to_end(inode)
        return inode.fd

    def pin(self, inode: Inode) -> None:
        self.fd(inode)
        inode.pins += 1
        self._idle.pop(inode, None)

    def unpin(self, inode: Inode) -> None:
        inode.pins -= 1
        if inode.fd is not None:
            self._idle_again(inode)

    def forget(self, inode: Inode) -> None:
        self._idle.pop(inode, None)
        if inode.fd is not None:
            os.close(inode.fd)
            inode.fd = None

    def _idle_again(self, inode: Inode) -> None:
        if inode.pins or not inode.reopenable:
            return
        self._idle[inode] = None
        self._idle.move_to_end(inode)
        while len(self._idle) > self.capacity:
            victim, _ = self._idle.popitem(last=False)
            assert victim.fd is not None
            os.close(victim.fd)
            victim.fd = None


_shared: DescriptorCache | None = None


def shared_descriptors() -> DescriptorCache:
    """The process's cache (made at first use: after the daemon has raised its limit)."""
    global _shared
    if _shared is None:
        _shared = DescriptorCache()
    return _shared


@dataclass
class _OpenFile:
    fd: int
    key: Hashable
    append: bool
    inode: Inode
    keep_setid: bool  # opened by a privileged caller (base.Store.open)


class LocalStore:
    """One volume's bytes in a directory of this host (see the module docstring)."""

    def __init__(self, base: str | os.PathLike[str], usage: Usage | None = None, *,
                 read_only: bool = False, cache_timeout: float = 1.0,
                 track_usage: bool = True, outside_writers: bool = False,
                 descriptors: DescriptorCache | None = None) -> None:
        self.base = os.fsencode(base)
        self._cache = descriptors if descriptors is not None else shared_descriptors()
        # For each filesystem (mount id) met: a descriptor to reopen its file handles
        # against, or None where reopening does not work (then descriptors stay open).
        self._mounts: dict[int, _Mount | None] = {}
        self.usage = usage or Usage()
        # A host directory is changed behind our back and may be huge: its usage
        # is neither measured nor limited, and its writes skip the accounting.
        self.track_usage = track_usage
        self.outside_writers = outside_writers
        self.read_only = read_only
        self.cache_timeout = cache_timeout
        self._files: dict[FileHandle, _OpenFile] = {}
        self._open_count: dict[Hashable, int] = {}
        # The open files of each inode: the kernel asks for security.capability before
        # it writes to a file (fs/negotiate.py), and fgetxattr on one of them costs a
        # third of getxattr through /proc/self/fd.
        self._open_fds: dict[Inode, list[int]] = {}
        # Inodes whose last name is gone while still open: their bytes stay
        # stored, and counted, until the last descriptor is released.
        self._orphans: set[Hashable] = set()

    # -- names -----------------------------------------------------------------

    async def open_root(self) -> Entry:
        # The root is a directory, or (a HostPath of type File) a single file.
        return self._entry(os.open(self.base, _PATH_FLAGS))

    async def lookup(self, parent: Inode, name: bytes) -> Entry:
        return self._entry(os.open(name, _PATH_FLAGS, dir_fd=self._fd(parent)))

    def forget(self, handle: Inode) -> None:
        self._cache.forget(handle)

    def reopen(self, file_handle: bytes) -> Entry:
        """The object a previous daemon knew by ``file_handle`` (its Inode's), found
        again; OSError (ESTALE) if it is gone. For serving a kept FUSE connection."""
        root = self._entry(os.open(self.base, _PATH_FLAGS))  # registers the base's mount
        try:
            mount = root.handle.mount
            if mount is None:
                raise OSError(errno.EOPNOTSUPP, "no file handles here")
            fd = syscalls.open_by_handle(mount.fd, file_handle, _PATH_FLAGS)
        finally:
            self.forget(root.handle)
        return self._entry(fd)

    async def getattr(self, handle: Inode) -> os.stat_result:
        return os.fstat(self._fd(handle))

    async def readlink(self, handle: Inode) -> bytes:
        return os.readlink(b"", dir_fd=self._fd(handle))

    async def listdir(self, handle: Inode) -> Sequence[bytes]:
        fd = os.open(_proc(self._fd(handle)), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            return [os.fsencode(name) for name in os.listdir(fd)]
        finally:
            os.close(fd)

    # -- attributes ------------------------------------------------------------

    async def setattr(self, handle: Inode, changes: AttrChanges,
                      fh: FileHandle | None) -> os.stat_result:
        if changes.size is not None:
            self._truncate(handle, fh, changes.size, changes)
        if changes.uid is not None or changes.gid is not None:
            syscalls.fchown_inode(self._fd(handle), _or_keep(changes.uid),
                                  _or_keep(changes.gid))
        if changes.drop_setid:
            _drop_setid(self._fd(handle), os.fstat(self._fd(handle)).st_mode)
        if changes.mode is not None:
            os.chmod(_proc(self._fd(handle)), stat.S_IMODE(changes.mode))
        if changes.atime_ns is not None or changes.mtime_ns is not None:
            syscalls.utimens_inode(self._fd(handle), changes.atime_ns, changes.mtime_ns)
        return os.fstat(self._fd(handle))

    def _truncate(self, handle: Inode, fh: FileHandle | None, size: int,
                  changes: AttrChanges) -> None:
        if not self.track_usage:
            if fh is not None:
                os.ftruncate(fh, size)
            else:
                os.truncate(_proc(self._fd(handle)), size)
            if not changes.keep_setid:
                _drop_setid(self._fd(handle), os.fstat(self._fd(handle)).st_mode)
            return
        before = os.fstat(self._fd(handle))
        growth = size - before.st_size
        self.usage.require(growth)
        if fh is not None:
            os.ftruncate(self._files[fh].fd, size)
        else:
            os.truncate(_proc(self._fd(handle)), size)
        if stat.S_ISREG(before.st_mode):
            self.usage.grow(growth)
        if not changes.keep_setid:
            _drop_setid(self._fd(handle), before.st_mode)

    # -- making and removing names ---------------------------------------------

    async def mknod(self, parent: Inode, name: bytes, mode: int, rdev: int,
                    owner: Owner) -> Entry:
        os.mknod(name, mode, rdev, dir_fd=self._fd(parent))
        return self._adopt(parent, name, owner, mode)

    async def mkdir(self, parent: Inode, name: bytes, mode: int, owner: Owner) -> Entry:
        os.mkdir(name, mode, dir_fd=self._fd(parent))
        return self._adopt(parent, name, owner, mode)

    async def symlink(self, parent: Inode, name: bytes, target: bytes,
                      owner: Owner) -> Entry:
        os.symlink(target, name, dir_fd=self._fd(parent))
        return self._adopt(parent, name, owner, None)

    async def unlink(self, parent: Inode, name: bytes) -> None:
        gone = (os.stat(name, dir_fd=self._fd(parent), follow_symlinks=False)
                if self.track_usage else None)
        os.unlink(name, dir_fd=self._fd(parent))
        if gone is not None:
            self._name_removed(gone)

    async def rmdir(self, parent: Inode, name: bytes) -> None:
        os.rmdir(name, dir_fd=self._fd(parent))

    async def rename(self, old_parent: Inode, old_name: bytes, new_parent: Inode,
                     new_name: bytes, flags: int) -> None:
        replaced = None
        if self.track_usage and not flags & syscalls.RENAME_EXCHANGE:
            replaced = _lstat_or_none(self._fd(new_parent), new_name)
            moved = os.stat(old_name, dir_fd=self._fd(old_parent), follow_symlinks=False)
            if replaced is not None and _key(replaced) == _key(moved):
                replaced = None  # two names of one inode: rename(2) does nothing
        old_fd = self._fd(old_parent)
        new_fd = self._fd(new_parent)  # the cache keeps at least the two last used
        syscalls.renameat2(old_fd, old_name, new_fd, new_name, flags)
        if replaced is not None:
            self._name_removed(replaced)

    async def link(self, handle: Inode, new_parent: Inode, new_name: bytes) -> os.stat_result:
        source = _proc(self._fd(handle))
        os.link(source, new_name, dst_dir_fd=self._fd(new_parent), follow_symlinks=True)
        return os.fstat(self._fd(handle))

    def _adopt(self, parent: Inode, name: bytes, owner: Owner, mode: int | None) -> Entry:
        """Hand a just-made object to its caller, as the kernel would have made it.

        We run as root, so the object is root's: give it the caller's uid, and
        the caller's gid unless the directory is setgid (then the kernel gave it
        the directory's group, which is right). chown(2) clears setuid/setgid,
        so put back the bits the caller asked for.
        """
        setgid_dir = os.fstat(self._fd(parent)).st_mode & stat.S_ISGID
        fd = os.open(name, _PATH_FLAGS, dir_fd=self._fd(parent))
        try:
            syscalls.fchown_inode(fd, owner.uid, -1 if setgid_dir else owner.gid)
            if mode is not None and mode & (stat.S_ISUID | stat.S_ISGID):
                os.chmod(_proc(fd), stat.S_IMODE(mode))
        except BaseException:
            os.close(fd)
            raise
        return self._entry(fd)

    def _adopt_created(self, parent: Inode, fd: int, owner: Owner, mode: int) -> Entry:
        """:meth:`_adopt` for a file made by create, through the descriptor that made it.

        Not by its name: a host process (behind a HostPath) may rename another file
        over that name meanwhile, and that one is not the caller's to own. The open
        descriptor also spares the ctypes call and a lookup of the name.
        """
        setgid_dir = os.fstat(self._fd(parent)).st_mode & stat.S_ISGID
        os.fchown(fd, owner.uid, -1 if setgid_dir else owner.gid)
        if mode & (stat.S_ISUID | stat.S_ISGID):
            os.fchmod(fd, stat.S_IMODE(mode))
        # The O_PATH descriptor the inode is known by outlives this open file (released
        # at close): reopened through /proc, it names the very inode just made.
        return self._entry(os.open(_proc(fd), _PATH_FLAGS & ~os.O_NOFOLLOW))

    def _name_removed(self, gone: os.stat_result) -> None:
        """Account for a name that no longer exists (unlink, or replaced by rename)."""
        if not stat.S_ISREG(gone.st_mode) or gone.st_nlink > 1:
            return
        if self._open_count.get(_key(gone)):
            self._orphans.add(_key(gone))
        else:
            self.usage.grow(-gone.st_size)

    # -- open files --------------------------------------------------------------

    async def open(self, handle: Inode, flags: int, *,
                   keep_setid: bool = False) -> FileHandle:
        flags &= ~_OPEN_STRIP
        before = os.fstat(self._fd(handle)) if flags & os.O_TRUNC else None
        fd = os.open(_proc(self._fd(handle)), flags | os.O_CLOEXEC)
        if before is not None:
            self.usage.grow(-before.st_size)
            if not keep_setid:
                _drop_setid(self._fd(handle), before.st_mode)
        return self._register(fd, flags, handle, keep_setid)

    async def create(self, parent: Inode, name: bytes, mode: int, flags: int,
                     owner: Owner, *, keep_setid: bool = False
                     ) -> tuple[FileHandle, Entry]:
        flags = (flags & ~os.O_DIRECT) | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            # Always exclusive: only a file made here is the caller's to own.
            fd = os.open(name, flags | os.O_EXCL, mode, dir_fd=self._fd(parent))
        except FileExistsError:
            if flags & os.O_EXCL:
                raise
            return await self._open_existing(parent, name, flags, keep_setid)
        try:
            entry = self._adopt_created(parent, fd, owner, mode)
        except BaseException:
            os.close(fd)
            raise
        return self._register(fd, flags, entry.handle, keep_setid, _key(entry.attrs)), entry

    async def _open_existing(self, parent: Inode, name: bytes, flags: int,
                             keep_setid: bool) -> tuple[FileHandle, Entry]:
        """A create (without O_EXCL) of a name that exists after all.

        The kernel asks to create a name it believes absent, but something may have
        made it meanwhile (the host, behind a HostPath). open(2) would open that
        file as it is: its owner and mode are not the caller's to change.
        """
        entry = await self.lookup(parent, name)
        try:
            fh = await self.open(entry.handle, flags, keep_setid=keep_setid)
            return fh, Entry(entry.handle, os.fstat(self._fd(entry.handle)),
                             entry.generation)
        except BaseException:
            self.forget(entry.handle)
            raise

    def _register(self, fd: int, flags: int, inode: Inode, keep_setid: bool,
                  key: Hashable | None = None) -> FileHandle:
        """Keep ``fd`` open for ``inode``; ``key``: its (dev, ino), when already known."""
        if key is None:
            key = _key(os.fstat(fd))
        self._cache.pin(inode)  # an unlinked file could not be reopened by handle
        self._files[fd] = _OpenFile(fd, key, bool(flags & os.O_APPEND), inode, keep_setid)
        self._open_count[key] = self._open_count.get(key, 0) + 1
        self._open_fds.setdefault(inode, []).append(fd)
        return fd

    async def read(self, fh: FileHandle, offset: int, size: int) -> bytes:
        return os.pread(fh, size, offset)

    async def write(self, fh: FileHandle, offset: int, data: bytes) -> int:
        """Store what fits under the limit: a short write, then ENOSPC, as a full disk does."""
        file = self._files[fh]
        if file.keep_setid and not self.track_usage:
            return os.pwrite(fh, data, offset)  # nothing to drop, nothing to count: no fstat
        st = os.fstat(fh)
        if st.st_mode & _SETID and not file.keep_setid:
            _drop_setid(fh, st.st_mode)
        if not self.track_usage:
            return os.pwrite(fh, data, offset)
        size = st.st_size
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
        fds = self._open_fds[file.inode]
        fds.remove(fh)
        if not fds:
            del self._open_fds[file.inode]
        os.close(fh)
        self._cache.unpin(file.inode)

    # -- extended attributes -----------------------------------------------------

    async def setxattr(self, handle: Inode, name: bytes, value: bytes) -> None:
        os.setxattr(_proc(self._fd(handle)), name, value)

    async def getxattr(self, handle: Inode, name: bytes) -> bytes:
        fds = self._open_fds.get(handle)
        return os.getxattr(fds[0] if fds else _proc(self._fd(handle)), name)

    async def listxattr(self, handle: Inode) -> Sequence[bytes]:
        return [os.fsencode(name) for name in os.listxattr(_proc(self._fd(handle)))]

    async def removexattr(self, handle: Inode, name: bytes) -> None:
        os.removexattr(_proc(self._fd(handle)), name)

    async def statfs(self) -> os.statvfs_result:
        return os.statvfs(self.base)

    # -- helpers -----------------------------------------------------------------

    def _fd(self, handle: Inode) -> int:
        """The descriptor of ``handle``, reopened if need be: use it at once (DescriptorCache)."""
        return self._cache.fd(handle)

    def _entry(self, fd: int) -> Entry:
        """Take ``fd`` (an O_PATH descriptor just opened) into the cache as a new handle."""
        try:
            st = os.fstat(fd)
            file_handle, mount = self._file_handle(fd, st)
        except BaseException:
            os.close(fd)
            raise
        # The file handle is the generation: once the cache closes this descriptor, the
        # inode is no longer pinned and its number may go to a new file.
        inode = Inode(fd, file_handle, mount)
        return Entry(self._cache.add(inode), st, inode.file_handle)

    def _file_handle(self, fd: int, st: os.stat_result) -> tuple[bytes | None, _Mount | None]:
        """The file handle to reopen ``fd``'s inode by, and where to reopen it."""
        try:
            file_handle, mount_id = syscalls.name_to_handle(fd)
        except OSError:  # EOPNOTSUPP: no handles on this filesystem (overlayfs, ...)
            return None, None  # keep the descriptor, then
        if mount_id not in self._mounts:
            if not stat.S_ISDIR(st.st_mode):
                return None, None  # a directory of this filesystem will give a mount_fd
            self._mounts[mount_id] = _mount_fd(fd, file_handle)
        mount = self._mounts[mount_id]
        return (file_handle, mount) if mount is not None else (None, None)


def _mount_fd(fd: int, file_handle: bytes) -> _Mount | None:
    """Where to reopen file handles of ``fd``'s filesystem (``fd`` is a directory),
    if reopening works here (it needs CAP_DAC_READ_SEARCH), else None."""
    mount_fd = os.open(_proc(fd), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.close(syscalls.open_by_handle(mount_fd, file_handle, _PATH_FLAGS))
    except OSError:
        os.close(mount_fd)
        return None
    return _Mount(mount_fd)


def _drop_setid(fd: int, mode: int) -> None:
    """Remove what a write or truncate removes (base.setid_bits_to_drop) from ``fd``'s
    inode (an open file, or an O_PATH descriptor)."""
    bits = setid_bits_to_drop(mode)
    if bits:
        os.chmod(_proc(fd), stat.S_IMODE(mode) & ~bits)


def _or_keep(value: int | None) -> int:
    return -1 if value is None else value


def _lstat_or_none(parent: int, name: bytes) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return None


