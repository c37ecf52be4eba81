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
the COMMIT, the written data is kept (up to ``_UNSTABLE_LIMIT`` per open file,
then committed early): when the server's write verifier changes (it restarted
and may have lost unstable data) it is written again, FILE_SYNC.

A FUSE write returns once its WRITE is sent (write-behind, up to
``_WRITE_BEHIND`` bytes per file on their way, never two overlapping): a stream
of writes costs bandwidth, not a round trip each. A WRITE that fails makes the
file's next write, or its flush at close, fail with that error, as NFS reports
write errors at close. Reads and attribute calls on the file wait for its
writes first. Sequential reads are read ahead (``_READ_AHEAD_WINDOWS`` READs of
``_READ_AHEAD`` on their way).

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
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import trio

from volfs.stores import syscalls
from volfs.stores.base import AttrChanges, Entry, FileHandle, Owner
from volfs.stores.nfs import _libnfs as L
from volfs.stores.nfs.nfs3 import FsInfo, Nfs3, ReadReply, SetAttrs, Started, Written
from volfs.stores.quota import QuotaExceeded, Usage

log = logging.getLogger(__name__)

SILLY_PREFIX = b".volfs-nfs-"
NFS_CACHE_SECONDS = 1.0  # the share may change behind our back (other clients, the server)
_UNSTABLE_LIMIT = 32 * 1024 * 1024  # uncommitted bytes kept per file (to write again)
_WRITE_BEHIND = 8 * 1024 * 1024  # bytes of WRITEs a file may have on their way
_READ_AHEAD = 1024 * 1024  # one READ of read-ahead
_READ_AHEAD_WINDOWS = 8
_SEQUENTIAL = 1  # sequential reads seen before read-ahead starts
_LISTED_TTL = 2.0  # seconds a READDIRPLUS entry may answer the lookup that follows it
_LISTED_MAX = 65536
_silly_ids = itertools.count(1)


@dataclass
class _Flight:
    """A WRITE on its way."""

    offset: int
    data: bytes
    started: Started[Written]


@dataclass
class _Window:
    """A READ of read-ahead."""

    offset: int
    length: int
    started: Started[ReadReply]


@dataclass
class _OpenFile:
    fh: bytes
    append: bool
    dirty: bool = False  # unstable writes not yet committed
    verifier: bytes | None = None
    unstable: list[tuple[int, bytes]] = field(default_factory=list)
    unstable_bytes: int = 0
    flights: deque[_Flight] = field(default_factory=deque)
    flight_bytes: int = 0
    error: OSError | None = None  # a WRITE that failed while nobody of this file waited
    next_read: int = 0
    sequential: int = 0
    windows: deque[_Window] = field(default_factory=deque)
    landing: trio.Lock = field(default_factory=trio.Lock)  # one task takes WRITE replies


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
        self.name = name
        self._rsize = max(4096, min(info.rtmax or 1 << 20, 1 << 20))
        self._wsize = max(4096, min(info.wtmax or 1 << 20, 1 << 20))
        self._files: dict[FileHandle, _OpenFile] = {}
        self._next_fh = itertools.count(1)
        self._by_fh: dict[bytes, set[FileHandle]] = {}  # the open files of each object
        self._flying: dict[bytes, int] = {}  # WRITEs on their way, by object
        self._unsure: set[bytes] = set()  # objects whose size a failed WRITE left unknown
        self._sizes: dict[bytes, int] = {}  # size of each open file, as the server last said
        self._silly: dict[bytes, tuple[bytes, bytes]] = {}  # open fh -> (dir, hidden name)
        self._dir_modes: dict[bytes, int] = {}
        self._listed: dict[tuple[bytes, bytes], tuple[float, bytes, os.stat_result]] = {}
        self._on_close = on_close
        self.closed = False

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
                and not self._flying.get(listed[1]):
            return self._entry(listed[1], listed[2])
        fh, attrs = await self.nfs.lookup(parent, name)
        if attrs is None or self._flying.get(fh):
            attrs = await self.getattr(fh)
        return self._entry(fh, attrs)

    def _entry(self, fh: bytes, attrs: os.stat_result) -> Entry:
        # The handle is the generation: a new file may get a removed one's fileid.
        return Entry(fh, self._seen(fh, attrs), generation=fh)

    def forget(self, handle: bytes) -> None:
        self._dir_modes.pop(handle, None)

    async def getattr(self, handle: bytes) -> os.stat_result:
        if self._flying.get(handle):
            await self._settle(handle)  # the size the server gives must count them
        return self._seen(handle, await self.nfs.getattr(handle))

    async def readlink(self, handle: bytes) -> bytes:
        return await self.nfs.readlink(handle)

    async def listdir(self, handle: bytes) -> Sequence[bytes]:
        entries = await self.nfs.readdir(handle)
        if len(self._listed) > _LISTED_MAX:
            self._listed.clear()
        until = trio.current_time() + min(_LISTED_TTL, max(self.cache_timeout, 0.1))
        names = []
        for entry in entries:
            if entry.name.startswith(SILLY_PREFIX):
                continue
            names.append(entry.name)
            if entry.fh is not None and entry.attrs is not None:
                self._listed[(handle, entry.name)] = (until, entry.fh, entry.attrs)
        return names

    # -- attributes --------------------------------------------------------------------------

    async def setattr(self, handle: bytes, changes: AttrChanges,
                      fh: FileHandle | None) -> os.stat_result:
        if self._flying.get(handle):
            await self._settle(handle)  # a truncate must come after the writes before it
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
        if size_before is not None and stat.S_ISREG(size_before.st_mode):
            self.usage.grow(after.st_size - size_before.st_size)
        if handle in self._sizes:
            self._sizes[handle] = after.st_size
        return self._seen(handle, after)

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
        if self._flying.get(handle):
            await self._settle(handle)
        attrs = await self.nfs.link(handle, new_parent, new_name)
        return self._seen(handle, attrs if attrs is not None else await self.nfs.getattr(handle))

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

    async def open(self, handle: bytes, flags: int) -> FileHandle:
        truncate = flags & os.O_TRUNC and flags & (os.O_WRONLY | os.O_RDWR)
        if truncate and self._flying.get(handle):
            await self._settle(handle)
        attrs = await self._still_there(handle)
        if truncate:
            self._forget_read_ahead(handle)
            after = await self.nfs.setattr(handle, SetAttrs(size=0))
            if self.track_usage and stat.S_ISREG(attrs.st_mode):
                self.usage.grow(-attrs.st_size)
            size = 0 if after is None else after.st_size
        elif self.track_usage or flags & os.O_APPEND:
            size = attrs.st_size
        else:
            size = -1  # unknown until a write tells: only a tracked or appending file needs it
        return self._register(handle, flags, size)

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
                     owner: Owner) -> tuple[FileHandle, Entry]:
        attrs = await self._attrs_for(parent, owner, mode)
        try:
            made = await self.nfs.create(parent, name, attrs, exclusive=True)
        except FileExistsError:
            if flags & os.O_EXCL:
                raise
            entry = await self.lookup(parent, name)  # made meanwhile: open it instead
            return await self.open(entry.handle, flags), entry
        entry = await self._made(parent, name, made.fh, made.attrs)
        return self._register(entry.handle, flags, entry.attrs.st_size), entry

    def _register(self, fh: bytes, flags: int, size: int) -> FileHandle:
        handle = next(self._next_fh)
        self._files[handle] = _OpenFile(fh, bool(flags & os.O_APPEND))
        self._by_fh.setdefault(fh, set()).add(handle)
        if size >= 0:
            self._sizes[fh] = size
        return handle

    # -- reading: read-ahead on sequential reads ----------------------------------------------

    async def read(self, fh: FileHandle, offset: int, size: int) -> bytes:
        file = self._files[fh]
        if self._flying.get(file.fh):
            await self._settle(file.fh)  # read what was written
        end = offset + size
        # Chosen before the first await: the kernel sends several reads of one stream at
        # once (its own read-ahead), and each must see the stream as the one before left it.
        windows = self._take_windows(file, offset, end)
        parts: list[bytes] = []
        pos, eof = offset, False
        for window in windows:
            if pos < window.offset:
                break  # a hole between windows: read below
            try:
                reply = await window.started.result()
            except OSError:
                break  # read again below: its error is the one to give
            got = reply.data[pos - window.offset: end - window.offset]
            parts.append(got)
            pos += len(got)
            if len(reply.data) < window.length:  # the end of the file (when it was read)
                eof = pos >= window.offset + len(reply.data)
                file.windows.clear()
                break
        if pos < end and not eof:
            data, eof = await self._read_now(file.fh, pos, end - pos)
            parts.append(data)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _take_windows(self, file: _OpenFile, offset: int, end: int) -> list[_Window]:
        """The read-ahead windows that cover [offset, end), in order; read further ahead.

        A read where the last one ended continues the stream: windows it has passed are
        dropped and more are started. Any other read stops the read-ahead.
        """
        sequential = offset == file.next_read
        file.next_read = end
        file.sequential = file.sequential + 1 if sequential else 0
        covering = [w for w in file.windows if w.offset < end and offset < w.offset + w.length]
        if not sequential:
            file.windows.clear()
            return covering
        while file.windows and file.windows[0].offset + file.windows[0].length <= end:
            file.windows.popleft()
        if file.sequential >= _SEQUENTIAL:
            self._read_ahead(file, end)
        return covering

    async def _read_now(self, fh: bytes, offset: int, size: int) -> tuple[bytes, bool]:
        chunks, eof = [], False
        while size > 0:
            data, eof, _ = await self.nfs.read(fh, offset, min(size, self._rsize))
            chunks.append(data)
            offset += len(data)
            size -= len(data)
            if eof or not data:
                eof = True
                break
        return (chunks[0] if len(chunks) == 1 else b"".join(chunks)), eof

    def _read_ahead(self, file: _OpenFile, pos: int) -> None:
        """Keep _READ_AHEAD_WINDOWS READs on their way past ``pos``.

        Windows end on multiples of their size, as the kernel's requests do, so that a
        request is one window's bytes, passed on without a copy.
        """
        start = file.windows[-1].offset + file.windows[-1].length if file.windows else pos
        size = min(_READ_AHEAD, self._rsize)
        while len(file.windows) < _READ_AHEAD_WINDOWS:
            length = size - start % size
            file.windows.append(_Window(start, length,
                                        self.nfs.start_read(file.fh, start, length)))
            start += length

    def _forget_read_ahead(self, fh: bytes) -> None:
        for handle in self._by_fh.get(fh, ()):
            self._files[handle].windows.clear()

    # -- writing: write-behind, COMMIT at flush ------------------------------------------------

    async def write(self, fh: FileHandle, offset: int, data: bytes) -> int:
        """Store what fits under the limit: a short write, then ENOSPC, as a full disk does.

        The WRITE is sent and the call returns: up to _WRITE_BEHIND bytes per file are on
        their way at once, so a stream of writes is not one round trip each. A WRITE that
        fails makes the next write (or the flush at close) fail with its error.
        """
        file = self._files[fh]
        if file.error is not None:
            error, file.error = file.error, None
            raise error
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
            await self._make_room(file, at, len(chunk))
            flight = _Flight(at, chunk, self.nfs.start_write(file.fh, at, chunk, L.UNSTABLE))
            file.flights.append(flight)
            file.flight_bytes += len(chunk)
            self._flying[file.fh] = self._flying.get(file.fh, 0) + 1
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
            if self._flying.get(file.fh):
                await self._settle(file.fh)
            actual = (await self.nfs.getattr(file.fh)).st_size
            if self.track_usage and size is not None:
                self.usage.grow(actual - size)  # what a failed write had counted
            self._unsure.discard(file.fh)
            size = self._sizes[file.fh] = actual
        return size

    async def _make_room(self, file: _OpenFile, offset: int, length: int) -> None:
        """Land flights until this one may go: never two overlapping WRITEs on their way
        (the server may apply them in either order), never more than _WRITE_BEHIND."""
        for handle in list(self._by_fh.get(file.fh, ())):
            other = self._files.get(handle)
            while other is not None and any(f.offset < offset + length and offset < f.offset
                                            + len(f.data) for f in other.flights):
                await self._land(other)
        while file.flights and file.flight_bytes + length > _WRITE_BEHIND:
            await self._land(file)

    async def _land(self, file: _OpenFile) -> None:
        """Take the reply to the oldest WRITE on its way; raise its error.

        One task at a time per file, and the WRITE stays on the file's flights (so
        readers, who settle first, wait for it) until its reply is in: a read must
        never pass a WRITE that another task is still landing.
        """
        async with file.landing:
            if file.flights:
                await self._land_first(file)

    async def _land_first(self, file: _OpenFile) -> None:
        flight = file.flights[0]
        try:
            reply = await flight.started.result()
            done = reply.written
            while done < len(flight.data):  # the server took less: the rest, now
                reply = await self.nfs.write(file.fh, flight.offset + done,
                                             flight.data[done:], L.UNSTABLE)
                if reply.written == 0:
                    raise OSError(errno.EIO, "the server wrote nothing")
                done += reply.written
        except OSError:
            self._unsure.add(file.fh)  # the size we assumed may be wrong: ask at next write
            raise
        finally:
            file.flights.popleft()
            file.flight_bytes -= len(flight.data)
            count = self._flying[file.fh] - 1
            if count:
                self._flying[file.fh] = count
            else:
                del self._flying[file.fh]
        await self._note_unstable(file, flight.offset, flight.data, reply)

    async def _land_all(self, file: _OpenFile) -> OSError | None:
        """Land every flight of the file; the first error, if any (also one kept before)."""
        error, file.error = file.error, None
        while file.flights:
            try:
                await self._land(file)
            except OSError as exc:
                error = error or exc
        return error

    async def _settle(self, fh: bytes) -> None:
        """Land every WRITE on its way to ``fh`` (before reading it or its attributes);
        errors wait for the writer's next call."""
        for handle in list(self._by_fh.get(fh, ())):
            file = self._files.get(handle)
            if file is not None and file.flights:  # landing or not: _land waits its turn
                file.error = await self._land_all(file)

    async def _note_unstable(self, file: _OpenFile, offset: int, data: bytes,
                             reply: Written) -> None:
        if reply.committed == L.FILE_SYNC:
            return
        file.dirty = True
        if file.verifier is not None and reply.verifier != file.verifier:
            await self._rewrite(file)  # the server restarted since: what it held may be lost
        file.verifier = reply.verifier
        file.unstable.append((offset, data))
        file.unstable_bytes += len(data)
        if file.unstable_bytes > _UNSTABLE_LIMIT:
            await self._commit(file)

    async def _rewrite(self, file: _OpenFile) -> None:
        """Write again, FILE_SYNC, what the server acknowledged only as unstable."""
        log.warning("%s: the server restarted: writing %d unstable bytes again",
                    self.name, file.unstable_bytes)
        for offset, data in file.unstable:
            done = 0
            while done < len(data):
                reply = await self.nfs.write(file.fh, offset + done, data[done:], L.FILE_SYNC)
                if reply.written == 0:
                    raise OSError(errno.EIO, "the server wrote nothing")
                done += reply.written
        file.unstable.clear()
        file.unstable_bytes = 0

    async def _commit(self, file: _OpenFile) -> None:
        if not file.dirty:
            return
        verifier = await self.nfs.commit(file.fh)
        if file.verifier is not None and verifier != file.verifier:
            await self._rewrite(file)
            await self.nfs.commit(file.fh)
        file.verifier = None
        file.unstable.clear()
        file.unstable_bytes = 0
        file.dirty = False

    async def _sync(self, file: _OpenFile) -> None:
        error = await self._land_all(file)
        if error is not None:
            raise error
        await self._commit(file)

    async def flush(self, fh: FileHandle) -> None:
        await self._sync(self._files[fh])  # close-to-open: what was written is on the server

    async def fsync(self, fh: FileHandle, datasync: bool) -> None:
        await self._sync(self._files[fh])

    async def release(self, fh: FileHandle) -> None:
        file = self._files[fh]
        try:
            if file.flights or file.dirty:
                await self._sync(file)
        except OSError as exc:
            log.warning("%s: writing back at release failed: %s", self.name, exc)
        finally:
            del self._files[fh]
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
        return attrs
