"""NfsStore: one directory of an NFS export, served as a volume, over NFSv3 file handles.

Handles are the server's NFSv3 file handles (``bytes``): a rename elsewhere,
even of a directory above, never makes one point at the wrong object, and hard
links are one object (``Entry.key`` is the server's fsid and fileid, and the handle,
whose generation tells a new file from a removed one with the same fileid; a server
that puts the parent into its handles, as knfsd's subtree_check does, shows two names
of one file as two inodes). NFS keeps no state per handle, so ``forget`` has nothing
to do.

Writes go out UNSTABLE (the server may hold them in memory) and ``flush``
(close) and ``fsync`` COMMIT them, as Linux's NFS client does at close. Until
the COMMIT, the written data is kept (up to ``UNSTABLE_LIMIT`` bytes per open file,
then committed early): when the server's write verifier changes (it restarted
and may have lost unstable data) it is written again, FILE_SYNC.

A FUSE write returns once its WRITE is sent (write-behind, up to
``WRITE_BEHIND`` bytes and ``WRITES_IN_FLIGHT`` WRITEs per file on their way,
never two overlapping): a stream
of writes costs bandwidth, not a round trip each. A WRITE that fails makes the
file's next write, or its flush at close, fail with that error, as NFS reports
write errors at close. Reads and attribute calls on the file wait for its
writes first. Sequential reads are read ahead (``READ_AHEAD_WINDOWS`` READs of
``READ_AHEAD`` on their way).

The two policies are collaborators of the store, each in its module:
:class:`~volfs.stores.nfs.writebehind.WriteBehind` (flights, landing, unstable
data, COMMIT) and :class:`~volfs.stores.nfs.readahead.ReadAhead` (one per open
file). The store keeps names, attributes, sizes and quota: it decides what to
write and counts it, then hands the WRITE to write-behind.

New objects are made by root with the caller's uid and gid in the create call
(the gid of a setgid directory stays the directory's, as the server's own
filesystem decides). A file unlinked while open is renamed to
``.volfs-nfs-<id>`` and removed at its last release (NFS's "silly rename"), so
it stays readable through its descriptors; those names are hidden from
listings.

Capacity is enforced as LocalStore does it (``Usage``): ENOSPC, and no byte
stored past the limit. The size of a file being written is known from the
server's own reply to every WRITE (its post-op attributes), so the check costs
no extra round trip.
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import stat
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import trio

from volfs.stores import syscalls
from volfs.stores.base import AttrChanges, Entry, FileHandle, Owner, setid_bits_to_drop
from volfs.stores.nfs.nfs3 import FsInfo, Nfs3, SetAttrs
from volfs.stores.nfs.readahead import ReadAhead
from volfs.stores.nfs.writebehind import COALESCE, FileWrites, Held, WriteBehind
from volfs.stores.quota import QuotaExceeded, Usage

log = logging.getLogger(__name__)

SILLY_PREFIX = b".volfs-nfs-"
NFS_CACHE_SECONDS = 1.0  # the share may change behind our back (other clients, the server)
_LISTED_TTL = 2.0  # seconds a READDIRPLUS entry may answer the lookup that follows it
_LISTED_MAX = 65536
_silly_ids = itertools.count(1)


@dataclass
class _OpenFile:
    fh: bytes
    append: bool
    reads: ReadAhead
    writes: FileWrites
    keep_setid: bool  # opened by a privileged caller (base.Store.open)
    setid_mode: int = 0  # the mode, while it has set-ID bits the next write must remove


class NfsStore:
    """A volume on an NFS server (see the module docstring)."""

    def __init__(self, nfs: Nfs3, root: bytes, info: FsInfo, *, usage: Usage | None = None,
                 track_usage: bool = False, read_only: bool = False,
                 cache_timeout: float = NFS_CACHE_SECONDS, name: str = "",
                 on_close: Callable[[], Awaitable[None]] | None = None) -> None:
        self.nfs = nfs
        self.root = root
        self.usage = usage or Usage()
        self.track_usage = track_usage
        self.read_only = read_only
        self.cache_timeout = cache_timeout
        self.outside_writers = True  # other clients, other pods' daemons, the server itself
        self.name = name
        self._rsize = max(4096, min(info.rtmax or 1 << 20, 1 << 20))
        self._wsize = max(4096, min(info.wtmax or 1 << 20, 1 << 20))
        self._files: dict[FileHandle, _OpenFile] = {}
        self._next_fh = itertools.count(1)
        self._by_fh: dict[bytes, set[FileHandle]] = {}  # the open files of each object
        self._unsure: set[bytes] = set()  # objects whose size a failed WRITE left unknown
        self._writes = WriteBehind(nfs, on_failed=self._unsure.add, name=name,
                                   coalesce=min(COALESCE, self._wsize), gather=self._wsize)
        self._sizes: dict[bytes, int] = {}  # size of each open file, as the server last said
        self._silly: dict[bytes, tuple[bytes, bytes]] = {}  # open fh -> (dir, hidden name)
        self._dir_modes: dict[bytes, int] = {}
        self._listed: dict[tuple[bytes, bytes], tuple[float, bytes, os.stat_result]] = {}
        self._on_close = on_close
        self.closed = False

    @property
    def write_backlog(self) -> Held:
        """What write-behind holds now for this store's open files (bounded per file)."""
        return self._writes.held()

    async def close(self) -> None:
        """Let go of the server connection (shared with other volumes on the same server)."""
        if not self.closed:
            self.closed = True
            if self._on_close is not None:
                await self._on_close()

    # -- names -----------------------------------------------------------------------------

    async def open_root(self) -> Entry:
        return self._entry(self.root, await self.nfs.getattr(self.root))

    async def lookup(self, parent: bytes, name: bytes) -> Entry:
        listed = self._listed.pop((parent, name), None)
        if listed is not None and listed[0] > trio.current_time() \
                and not self._writes.flying(listed[1]):
            return self._entry(listed[1], listed[2])
        fh, attrs = await self.nfs.lookup(parent, name)
        if attrs is None or self._writes.flying(fh):
            attrs = await self.getattr(fh)
        return self._entry(fh, attrs)

    def _entry(self, fh: bytes, attrs: os.stat_result) -> Entry:
        # The handle is the generation: a new file may get a removed one's fileid.
        return Entry(fh, self._seen(fh, attrs), generation=fh)

    def forget(self, handle: bytes) -> None:
        self._dir_modes.pop(handle, None)

    async def getattr(self, handle: bytes) -> os.stat_result:
        if self._writes.flying(handle):
            await self._writes.settle(handle)  # the size the server gives must count them
        return self._seen(handle, await self.nfs.getattr(handle))

    async def readlink(self, handle: bytes) -> bytes:
        return await self.nfs.readlink(handle)

    async def listdir(self, handle: bytes) -> Sequence[bytes]:
        entries = await self.nfs.readdir(handle)
        self._forget_expired_listings()
        until = trio.current_time() + min(_LISTED_TTL, max(self.cache_timeout, 0.1))
        names = []
        for entry in entries:
            if entry.name.startswith(SILLY_PREFIX):
                continue
            names.append(entry.name)
            if entry.fh is not None and entry.attrs is not None:
                key = (handle, entry.name)
                self._listed.pop(key, None)  # to the end: the dict stays in expiry order
                self._listed[key] = (until, entry.fh, entry.attrs)
        return names

    def _forget_expired_listings(self) -> None:
        """Drop the READDIRPLUS entries no lookup took in time (oldest first: the dict is in
        the order they expire), so a volume listed often keeps only the last moments'."""
        now = trio.current_time()
        while self._listed:
            key = next(iter(self._listed))
            if self._listed[key][0] > now and len(self._listed) <= _LISTED_MAX:
                break
            del self._listed[key]

    # -- attributes --------------------------------------------------------------------------

    async def setattr(self, handle: bytes, changes: AttrChanges,
                      fh: FileHandle | None) -> os.stat_result:
        if self._writes.flying(handle):
            await self._writes.settle(handle)  # a truncate must come after the writes before it
        if changes.size is not None:
            self._forget_read_ahead(handle)
        size_before: os.stat_result | None = None
        if changes.size is not None and self.track_usage:
            size_before = await self.nfs.getattr(handle)
            growth = changes.size - size_before.st_size
            if stat.S_ISREG(size_before.st_mode):
                self.usage.require(growth)
        owner_and_mode = changes.mode is not None and (changes.uid is not None
                                                       or changes.gid is not None)
        first = SetAttrs(
            mode=None if owner_and_mode or changes.mode is None else stat.S_IMODE(changes.mode),
            uid=changes.uid, gid=changes.gid, size=changes.size,
            atime_ns=changes.atime_ns, mtime_ns=changes.mtime_ns)
        after = await self.nfs.setattr(handle, first)
        if owner_and_mode:  # chown clears setuid/setgid: the mode goes second, as chmod would
            assert changes.mode is not None
            after = await self.nfs.setattr(handle, SetAttrs(mode=stat.S_IMODE(changes.mode)))
        if after is None:
            after = await self.nfs.getattr(handle)
        if (changes.size is not None and not changes.keep_setid) or changes.drop_setid:
            after = await self._drop_setid(handle, after)
        self._mode_changed(handle, after.st_mode)
        if size_before is not None and stat.S_ISREG(size_before.st_mode):
            self.usage.grow(after.st_size - size_before.st_size)
        if handle in self._sizes:
            self._sizes[handle] = after.st_size
        return self._seen(handle, after)

    async def _drop_setid(self, handle: bytes, attrs: os.stat_result | None,
                          mode: int | None = None) -> os.stat_result:
        """Remove the set-ID bits a write or truncate removes (base.setid_bits_to_drop):
        the object's attributes after."""
        mode = attrs.st_mode if attrs is not None else mode
        assert mode is not None
        bits = setid_bits_to_drop(mode)
        if bits:
            changed = await self.nfs.setattr(handle, SetAttrs(mode=stat.S_IMODE(mode) & ~bits))
            attrs = changed if changed is not None else None
            self._mode_changed(handle, mode & ~bits)
        return attrs if attrs is not None else await self.nfs.getattr(handle)

    def _mode_changed(self, handle: bytes, mode: int) -> None:
        """Tell the object's open files whether their next write must remove set-ID bits."""
        for fh in self._by_fh.get(handle, ()):
            file = self._files[fh]
            file.setid_mode = 0 if file.keep_setid or not setid_bits_to_drop(mode) else mode

    # -- making and removing names ---------------------------------------------------------

    async def _attrs_for(self, parent: bytes, owner: Owner, mode: int | None) -> SetAttrs:
        """What a new object gets: the caller's uid, and gid unless the directory is setgid."""
        parent_mode = self._dir_modes.get(parent)
        if parent_mode is None:
            parent_mode = self._seen(parent, await self.nfs.getattr(parent)).st_mode
        gid = None if parent_mode & stat.S_ISGID else owner.gid
        return SetAttrs(mode=None if mode is None else stat.S_IMODE(mode), uid=owner.uid,
                        gid=gid)

    async def _made(self, parent: bytes, name: bytes, fh: bytes | None,
                    attrs: os.stat_result | None) -> Entry:
        self._listed.pop((parent, name), None)
        if fh is None:
            fh, attrs = await self.nfs.lookup(parent, name)
        if attrs is None:
            attrs = await self.nfs.getattr(fh)
        return self._entry(fh, attrs)

    async def mknod(self, parent: bytes, name: bytes, mode: int, rdev: int,
                    owner: Owner) -> Entry:
        attrs = await self._attrs_for(parent, owner, mode)
        if stat.S_ISREG(mode):
            made = await self.nfs.create(parent, name, attrs, exclusive=True)
        else:
            made = await self.nfs.mknod(parent, name, mode, rdev, attrs)
        return await self._made(parent, name, made.fh, made.attrs)

    async def mkdir(self, parent: bytes, name: bytes, mode: int, owner: Owner) -> Entry:
        made = await self.nfs.mkdir(parent, name, await self._attrs_for(parent, owner, mode))
        return await self._made(parent, name, made.fh, made.attrs)

    async def symlink(self, parent: bytes, name: bytes, target: bytes, owner: Owner) -> Entry:
        made = await self.nfs.symlink(parent, name, target,
                                      await self._attrs_for(parent, owner, None))
        return await self._made(parent, name, made.fh, made.attrs)

    async def unlink(self, parent: bytes, name: bytes) -> None:
        self._listed.pop((parent, name), None)
        if not self.track_usage and not self._by_fh:
            await self.nfs.remove(parent, name)
            return
        fh, gone = await self.nfs.lookup(parent, name)
        if gone is None:
            gone = await self.nfs.getattr(fh)
        if self._by_fh.get(fh) and stat.S_ISREG(gone.st_mode) and gone.st_nlink == 1:
            await self._hide(fh, parent, name)  # still open: keep it until its last release
            return
        await self.nfs.remove(parent, name)
        self._name_removed(gone)

    async def rmdir(self, parent: bytes, name: bytes) -> None:
        self._listed.pop((parent, name), None)
        await self.nfs.rmdir(parent, name)

    async def rename(self, old_parent: bytes, old_name: bytes, new_parent: bytes,
                     new_name: bytes, flags: int) -> None:
        if flags & syscalls.RENAME_EXCHANGE:
            raise OSError(errno.EINVAL, "NFSv3 cannot exchange two names")
        self._listed.pop((old_parent, old_name), None)
        self._listed.pop((new_parent, new_name), None)
        replaced = None
        if flags & syscalls.RENAME_NOREPLACE or self.track_usage or self._by_fh:
            replaced = await self._lookup_or_none(new_parent, new_name)
            if replaced is not None and flags & syscalls.RENAME_NOREPLACE:
                raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST))
        if replaced is not None:
            moved_fh, _ = await self.nfs.lookup(old_parent, old_name)
            fh, attrs = replaced
            if moved_fh == fh:
                replaced = None  # two names of one object: rename(2) does nothing
            elif self._by_fh.get(fh) and stat.S_ISREG(attrs.st_mode) \
                    and attrs.st_nlink == 1:
                await self._hide(fh, new_parent, new_name)
                replaced = None
        await self.nfs.rename(old_parent, old_name, new_parent, new_name)
        if replaced is not None:
            self._name_removed(replaced[1])

    async def link(self, handle: bytes, new_parent: bytes, new_name: bytes) -> os.stat_result:
        self._listed.pop((new_parent, new_name), None)
        if self._writes.flying(handle):
            await self._writes.settle(handle)
        attrs = await self.nfs.link(handle, new_parent, new_name)
        if attrs is None:
            attrs = await self.nfs.getattr(handle)
        return self._seen(handle, attrs)

    async def _lookup_or_none(self, parent: bytes,
                              name: bytes) -> tuple[bytes, os.stat_result] | None:
        try:
            fh, attrs = await self.nfs.lookup(parent, name)
        except FileNotFoundError:
            return None
        return fh, attrs if attrs is not None else await self.nfs.getattr(fh)

    async def _hide(self, fh: bytes, parent: bytes, name: bytes) -> None:
        hidden = SILLY_PREFIX + b"%x-%d" % (os.getpid(), next(_silly_ids))
        await self.nfs.rename(parent, name, parent, hidden)
        self._silly[fh] = (parent, hidden)

    def _name_removed(self, gone: os.stat_result) -> None:
        if self.track_usage and stat.S_ISREG(gone.st_mode) and gone.st_nlink <= 1:
            self.usage.grow(-gone.st_size)

    # -- open files --------------------------------------------------------------------------

    async def open(self, handle: bytes, flags: int, *,
                   keep_setid: bool = False) -> FileHandle:
        truncate = flags & os.O_TRUNC and flags & (os.O_WRONLY | os.O_RDWR)
        if truncate and self._writes.flying(handle):
            await self._writes.settle(handle)
        attrs = await self._still_there(handle)
        if truncate:
            self._forget_read_ahead(handle)
            after = await self.nfs.setattr(handle, SetAttrs(size=0))
            if self.track_usage and stat.S_ISREG(attrs.st_mode):
                self.usage.grow(-attrs.st_size)
            size = 0 if after is None else after.st_size
            if not keep_setid:
                attrs = await self._drop_setid(handle, attrs)
        elif self.track_usage or flags & os.O_APPEND:
            size = attrs.st_size
        else:
            size = -1  # unknown until a write tells: only a tracked or appending file needs it
        return self._register(handle, flags, size, keep_setid, attrs.st_mode)

    async def _still_there(self, handle: bytes) -> os.stat_result:
        """The file's attributes, asked of the server at open (close-to-open, as NFS
        clients keep it): the kernel opens names it has cached for a second, and another
        client may have removed the file meanwhile. ESTALE then, and the kernel looks
        the name up again (an O_CREAT makes a new file) instead of using a file that no
        name reaches any more."""
        try:
            attrs = await self.nfs.getattr(handle)
            if attrs.st_nlink == 0 and handle not in self._silly:
                raise OSError(errno.ESTALE, os.strerror(errno.ESTALE))
        except OSError as exc:
            if exc.errno == errno.ESTALE:
                self._listed = {k: v for k, v in self._listed.items() if v[1] != handle}
            raise
        return attrs

    async def create(self, parent: bytes, name: bytes, mode: int, flags: int,
                     owner: Owner, *, keep_setid: bool = False
                     ) -> tuple[FileHandle, Entry]:
        attrs = await self._attrs_for(parent, owner, mode)
        try:
            made = await self.nfs.create(parent, name, attrs, exclusive=True)
        except FileExistsError:
            if flags & os.O_EXCL:
                raise
            entry = await self.lookup(parent, name)  # made meanwhile: open it instead
            return await self.open(entry.handle, flags, keep_setid=keep_setid), entry
        entry = await self._made(parent, name, made.fh, made.attrs)
        return self._register(entry.handle, flags, entry.attrs.st_size, keep_setid,
                              entry.attrs.st_mode), entry

    def _register(self, fh: bytes, flags: int, size: int, keep_setid: bool,
                  mode: int) -> FileHandle:
        handle = next(self._next_fh)
        self._files[handle] = _OpenFile(fh, bool(flags & os.O_APPEND),
                                        ReadAhead(self.nfs, fh, self._rsize),
                                        self._writes.open(fh), keep_setid)
        if not keep_setid and setid_bits_to_drop(mode):
            self._files[handle].setid_mode = mode
        self._by_fh.setdefault(fh, set()).add(handle)
        if size >= 0:
            self._sizes[fh] = size
        return handle

    # -- reading: read-ahead on sequential reads ----------------------------------------------

    async def read(self, fh: FileHandle, offset: int, size: int) -> bytes:
        file = self._files[fh]
        if self._writes.flying(file.fh):
            await self._writes.settle(file.fh)  # read what was written
        return await file.reads.read(offset, size)

    def _forget_read_ahead(self, fh: bytes) -> None:
        for handle in self._by_fh.get(fh, ()):
            self._files[handle].reads.forget()

    # -- writing: write-behind, COMMIT at flush ------------------------------------------------

    async def write(self, fh: FileHandle, offset: int, data: bytes) -> int:
        """Store what fits under the limit: a short write, then ENOSPC, as a full disk does.

        The WRITE is sent and the call returns: up to WRITE_BEHIND bytes per file are on
        their way at once, so a stream of writes is not one round trip each. A WRITE that
        fails makes the next write (or the flush at close) fail with its error.
        """
        file = self._files[fh]
        self._writes.check(file.writes)
        if file.setid_mode:
            await self._drop_setid(file.fh, None, file.setid_mode)
        if file.append or self.track_usage:
            size = await self._known_size(file)
            if file.append:
                offset = size
            if self.track_usage:
                growth = max(0, offset + len(data) - size)
                admitted = self.usage.admit(growth)
                if admitted < growth:
                    data = data[: len(data) - (growth - admitted)]
                    if not data:
                        raise QuotaExceeded()
        self._forget_read_ahead(file.fh)
        written = 0
        while written < len(data):
            chunk = data if len(data) <= self._wsize else data[written: written + self._wsize]
            at = offset + written
            await self._writes.send(file.writes, at, chunk)
            before = self._sizes.get(file.fh)
            if before is not None:
                self._sizes[file.fh] = max(before, at + len(chunk))
                if self.track_usage:
                    self.usage.grow(max(0, at + len(chunk) - before))
            written += len(chunk)
        return written

    async def _known_size(self, file: _OpenFile) -> int:
        size = self._sizes.get(file.fh)
        if size is None or file.fh in self._unsure:
            if self._writes.flying(file.fh):
                await self._writes.settle(file.fh)
            actual = (await self.nfs.getattr(file.fh)).st_size
            if self.track_usage and size is not None:
                self.usage.grow(actual - size)  # what a failed write had counted
            self._unsure.discard(file.fh)
            size = self._sizes[file.fh] = actual
        return size

    async def flush(self, fh: FileHandle) -> None:
        # close-to-open: what was written is on the server
        await self._writes.sync(self._files[fh].writes)

    async def fsync(self, fh: FileHandle, datasync: bool) -> None:
        await self._writes.sync(self._files[fh].writes)

    async def release(self, fh: FileHandle) -> None:
        file = self._files[fh]
        try:
            if file.writes.pending:
                await self._writes.sync(file.writes)
        except OSError as exc:
            log.warning("%s: writing back at release failed: %s", self.name, exc)
        finally:
            del self._files[fh]
            self._writes.release(file.writes)
            handles = self._by_fh[file.fh]
            handles.discard(fh)
            if not handles:
                del self._by_fh[file.fh]
                self._sizes.pop(file.fh, None)
                self._unsure.discard(file.fh)
                hidden = self._silly.pop(file.fh, None)
                if hidden is not None:
                    await self._remove_hidden(file.fh, *hidden)

    async def _remove_hidden(self, fh: bytes, parent: bytes, name: bytes) -> None:
        try:
            attrs = await self.nfs.getattr(fh)
            await self.nfs.remove(parent, name)
        except OSError as exc:
            log.warning("%s: removing unlinked file %s failed: %s", self.name,
                        name.decode(errors="replace"), exc)
            return
        self._name_removed(attrs)

    # -- extended attributes: NFSv3 has none ------------------------------------------------

    async def setxattr(self, handle: bytes, name: bytes, value: bytes) -> None:
        raise OSError(errno.ENOTSUP, "NFSv3 has no extended attributes")

    async def getxattr(self, handle: bytes, name: bytes) -> bytes:
        raise OSError(errno.ENOTSUP, "NFSv3 has no extended attributes")

    async def listxattr(self, handle: bytes) -> Sequence[bytes]:
        raise OSError(errno.ENOTSUP, "NFSv3 has no extended attributes")

    async def removexattr(self, handle: bytes, name: bytes) -> None:
        raise OSError(errno.ENOTSUP, "NFSv3 has no extended attributes")

    async def statfs(self) -> os.statvfs_result:
        st = await self.nfs.fsstat(self.root)
        bsize = 4096
        return os.statvfs_result((bsize, bsize, st.tbytes // bsize, st.fbytes // bsize,
                                  st.abytes // bsize, st.tfiles, st.ffiles, st.afiles, 0, 255))

    # -- helpers -------------------------------------------------------------------------------

    def _seen(self, fh: bytes, attrs: os.stat_result) -> os.stat_result:
        if stat.S_ISDIR(attrs.st_mode):
            self._dir_modes[fh] = attrs.st_mode
        if fh in self._silly and attrs.st_nlink > 0:
            # The server counts the hidden name; no name of the volume reaches the file
            # any more, so fstat says 0, as after unlink(2) of an open file anywhere.
            attrs = _with_nlink(attrs, attrs.st_nlink - 1)
        return attrs


def _with_nlink(st: os.stat_result, nlink: int) -> os.stat_result:
    return os.stat_result((
        st.st_mode, st.st_ino, st.st_dev, nlink, st.st_uid, st.st_gid, st.st_size,
        st[7], st[8], st[9],
        st.st_atime, st.st_mtime, st.st_ctime, st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns,
        st.st_blksize, st.st_blocks, st.st_rdev,
    ))
