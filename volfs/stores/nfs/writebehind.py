"""Write-behind for NFS files: WRITEs sent UNSTABLE, landed later, kept until COMMIT.

A FUSE write returns once its WRITE is sent (up to ``WRITE_BEHIND`` bytes and
``WRITES_IN_FLIGHT`` WRITEs per open file on their way): a stream of writes costs
bandwidth, not a round trip each. Small writes that continue one another are gathered
into one WRITE of up to wsize (as a kernel client's page cache would send them): a
stream of 4 KiB writes costs one call per MiB, not 256. What is gathered counts as on
its way to every rule below, and goes at once when full, when a write does not
continue it, or when anything settles or syncs the file: at most wsize per open file
waits in the daemon, and close and fsync send it. Never two overlapping WRITEs of one
object are on their way at once, since the server may apply them in either order. A WRITE that
fails makes the file's next write, or its flush at close, fail with that error, as
NFS reports write errors at close.

Reads and attribute calls on an object :meth:`WriteBehind.settle` first: they wait
for every WRITE on its way to it, including one another task is landing (a read
must never pass it); errors met then wait for the writer's next call.

Writes go out UNSTABLE (the server may hold them in memory) and a flush (close) or
fsync COMMITs them, as Linux's NFS client does at close. Until the COMMIT the written
data is kept (:class:`Uncommitted`, up to ``UNSTABLE_LIMIT`` bytes and
``UNSTABLE_WRITES`` pieces per open file, then committed early; small contiguous
writes join into one piece): when the server's write verifier changes (it restarted
and may have lost unstable data) it is written again, FILE_SYNC.

Sizes and quota are not kept here: the store counts what it sends, and is told
(``on_failed``) when a failed WRITE leaves the size it assumed unsure.
"""

from __future__ import annotations

import errno
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import trio

from volfs.stores.nfs import _libnfs as L
from volfs.stores.nfs.nfs3 import Reply, Written

log = logging.getLogger(__name__)

UNSTABLE_LIMIT = 32 * 1024 * 1024  # uncommitted bytes kept per file (to write again)
WRITE_BEHIND = 8 * 1024 * 1024  # bytes of WRITEs a file may have on their way
# Counts, not only bytes, bound what a file holds: each WRITE on its way or kept for a
# rewrite costs about a kilobyte of bookkeeping, so a file that takes a million 3-byte
# appends without a close would otherwise hold a gigabyte while under its byte limits.
WRITES_IN_FLIGHT = 64  # WRITEs a file may have on their way (far more than loopback needs)
UNSTABLE_WRITES = 4096  # kept pieces per file before an early COMMIT
COALESCE = 32 * 1024  # small contiguous writes are kept as one piece up to this size
GATHER = 1024 * 1024  # small contiguous writes go out as one WRITE of up to this size


class Writes(Protocol):
    """The NFS calls write-behind makes (:class:`volfs.stores.nfs.nfs3.Nfs3` has them)."""

    def start_write(self, fh: bytes, offset: int, data: bytes,
                    stable: int) -> Reply[Written]: ...

    async def write(self, fh: bytes, offset: int, data: bytes, stable: int) -> Written: ...

    async def commit(self, fh: bytes) -> bytes: ...


@dataclass
class Flight:
    """A WRITE on its way, or (``started`` None) small writes gathered into one WRITE
    that is not sent yet: to the rules (overlaps, window, settling) it is on its way."""

    offset: int
    data: bytes | bytearray
    started: Reply[Written] | None

    @property
    def end(self) -> int:
        return self.offset + len(self.data)

    def overlaps(self, offset: int, length: int) -> bool:
        return self.offset < offset + length and offset < self.offset + len(self.data)


@dataclass(frozen=True)
class Held:
    """What write-behind holds for the open files of a store (see WriteBehind.held)."""

    flights: int
    flight_bytes: int
    unstable_pieces: int
    unstable_bytes: int


class Uncommitted:
    """What the server acknowledged of one open file only as UNSTABLE, kept until COMMIT
    so that it can be written again if the server restarts (its verifier changes)."""

    def __init__(self, nfs: Writes, fh: bytes, *, name: str = "",
                 limit: int = UNSTABLE_LIMIT, pieces: int = UNSTABLE_WRITES,
                 coalesce: int = COALESCE) -> None:
        self.nfs = nfs
        self.fh = fh
        self.name = name  # the volume's, for the log
        self.limit = limit
        self.pieces = pieces
        self.coalesce = coalesce  # at most the server's wsize: a piece is written again whole
        self.dirty = False  # unstable writes not yet committed
        self.verifier: bytes | None = None
        self.unstable: list[tuple[int, bytes | bytearray]] = []
        self.unstable_bytes = 0

    async def note(self, offset: int, data: bytes | bytearray, reply: Written) -> None:
        """A WRITE of ``data`` at ``offset`` was answered with ``reply``."""
        if reply.committed == L.FILE_SYNC:
            return
        self.dirty = True
        if self.verifier is not None and reply.verifier != self.verifier:
            await self._rewrite()  # the server restarted since: what it held may be lost
        self.verifier = reply.verifier
        self._keep(offset, data)
        self.unstable_bytes += len(data)
        if self.unstable_bytes > self.limit or len(self.unstable) > self.pieces:
            await self.commit()

    def _keep(self, offset: int, data: bytes | bytearray) -> None:
        """Keep ``data`` for a rewrite: a small write that continues the last piece
        joins it (a stream of small appends is one piece, not one per write); large
        writes are kept as they are, never copied."""
        if self.unstable and len(data) < self.coalesce:
            start, last = self.unstable[-1]
            if start + len(last) == offset and len(last) + len(data) <= self.coalesce:
                if not isinstance(last, bytearray):
                    last = bytearray(last)
                    self.unstable[-1] = (start, last)
                last += data
                return
        self.unstable.append((offset, data))

    async def commit(self) -> None:
        """COMMIT, and write again first if the server lost what it held."""
        if not self.dirty:
            return
        verifier = await self.nfs.commit(self.fh)
        if self.verifier is not None and verifier != self.verifier:
            await self._rewrite()
            await self.nfs.commit(self.fh)
        self.verifier = None
        self.unstable.clear()
        self.unstable_bytes = 0
        self.dirty = False

    async def _rewrite(self) -> None:
        """Write again, FILE_SYNC, what the server acknowledged only as unstable."""
        log.warning("%s: the server restarted: writing %d unstable bytes again",
                    self.name, self.unstable_bytes)
        for offset, piece in self.unstable:
            data = bytes(piece)  # a joined piece is a bytearray; the call sends bytes
            done = 0
            while done < len(data):
                reply = await self.nfs.write(self.fh, offset + done, data[done:], L.FILE_SYNC)
                if reply.written == 0:
                    raise OSError(errno.EIO, "the server wrote nothing")
                done += reply.written
        self.unstable.clear()
        self.unstable_bytes = 0


class FileWrites:
    """The writes of one open file: its WRITEs on their way, and its unstable data."""

    def __init__(self, fh: bytes, uncommitted: Uncommitted) -> None:
        self.fh = fh
        self.uncommitted = uncommitted
        self.flights: deque[Flight] = deque()
        self.flight_bytes = 0
        self.error: OSError | None = None  # a WRITE that failed while nobody of it waited
        self.landing = trio.Lock()  # one task takes WRITE replies

    @property
    def pending(self) -> bool:
        """WRITEs on their way or data not committed: something to do at release."""
        return bool(self.flights) or self.uncommitted.dirty

    def overlaps(self, offset: int, length: int) -> bool:
        return any(f.overlaps(offset, length) for f in self.flights)


class WriteBehind:
    """The write-behind of one store's open files (see the module docstring).

    ``on_failed(fh)`` is called when a WRITE to ``fh`` fails: the size the store
    assumed for it may be wrong.
    """

    def __init__(self, nfs: Writes, *, on_failed: Callable[[bytes], None], name: str = "",
                 window: int = WRITE_BEHIND, calls: int = WRITES_IN_FLIGHT,
                 unstable_limit: int = UNSTABLE_LIMIT,
                 unstable_pieces: int = UNSTABLE_WRITES, coalesce: int = COALESCE,
                 gather: int = GATHER) -> None:
        self.nfs = nfs
        self.on_failed = on_failed
        self.name = name
        self.window = window
        self.calls = calls
        self.unstable_limit = unstable_limit
        self.unstable_pieces = unstable_pieces
        self.coalesce = coalesce
        self.gather = gather  # at most wsize: a gathered WRITE is one call
        self._open: dict[bytes, list[FileWrites]] = {}  # the open files of each object
        self._flying: dict[bytes, int] = {}  # WRITEs on their way, by object

    def open(self, fh: bytes) -> FileWrites:
        """The writes of a newly opened file of ``fh``."""
        writes = FileWrites(fh, Uncommitted(self.nfs, fh, name=self.name,
                                            limit=self.unstable_limit,
                                            pieces=self.unstable_pieces,
                                            coalesce=self.coalesce))
        self._open.setdefault(fh, []).append(writes)
        return writes

    def release(self, writes: FileWrites) -> None:
        """The file was released: other files' writes no longer wait for it."""
        files = self._open[writes.fh]
        files.remove(writes)
        if not files:
            del self._open[writes.fh]

    def held(self) -> Held:
        """What the open files hold now: WRITEs on their way and pieces kept to write
        again (both are bounded per file; a test and the metrics read them)."""
        files = [w for ws in self._open.values() for w in ws]
        return Held(flights=sum(len(w.flights) for w in files),
                    flight_bytes=sum(w.flight_bytes for w in files),
                    unstable_pieces=sum(len(w.uncommitted.unstable) for w in files),
                    unstable_bytes=sum(w.uncommitted.unstable_bytes for w in files))

    def flying(self, fh: bytes) -> bool:
        """Whether WRITEs to ``fh`` are on their way (a read or getattr must settle)."""
        return bool(self._flying.get(fh))

    def check(self, writes: FileWrites) -> None:
        """Raise (once) the error of a WRITE of this file that failed meanwhile."""
        if writes.error is not None:
            error, writes.error = writes.error, None
            raise error

    async def send(self, writes: FileWrites, offset: int, data: bytes) -> None:
        """Send one WRITE of ``data`` (at most wsize bytes), UNSTABLE, once it may go.

        Small writes that continue one another are gathered into one WRITE of up to
        ``gather`` bytes (a stream of 4 KiB or 128 KiB writes costs a few RPCs, not
        one each); the gathered WRITE goes when it is full, when a write does not
        continue it, and when anything settles or syncs the file.
        """
        if self._gathered_into(writes, offset, data):
            return
        self._start_gathered(writes)
        await self._make_room(writes, offset, len(data))
        if len(data) < self.gather:
            flight = Flight(offset, bytearray(data), None)
        else:
            flight = Flight(offset, data, self.nfs.start_write(writes.fh, offset, data,
                                                               L.UNSTABLE))
        writes.flights.append(flight)
        writes.flight_bytes += len(data)
        self._flying[writes.fh] = self._flying.get(writes.fh, 0) + 1

    def _gathered_into(self, writes: FileWrites, offset: int, data: bytes) -> bool:
        """Add ``data`` to the file's gathered WRITE if it continues it, fits, and no
        other WRITE of the object, of this file or another, is in its way (no await:
        all or none)."""
        last = writes.flights[-1] if writes.flights else None
        if (last is None or last.started is not None or last.end != offset
                or len(last.data) + len(data) > self.gather
                or writes.flight_bytes + len(data) > self.window
                or any(f is not last and f.overlaps(offset, len(data))
                       for o in self._open.get(writes.fh, ()) for f in o.flights)):
            return False
        assert isinstance(last.data, bytearray)
        last.data += data
        writes.flight_bytes += len(data)
        if len(last.data) >= self.gather:
            self._start(writes, last)
        return True

    def _start_gathered(self, writes: FileWrites) -> None:
        """Send the file's gathered WRITE, if it has one not sent yet."""
        if writes.flights and writes.flights[-1].started is None:
            self._start(writes, writes.flights[-1])

    def _start(self, writes: FileWrites, flight: Flight) -> None:
        flight.started = self.nfs.start_write(writes.fh, flight.offset, bytes(flight.data),
                                              L.UNSTABLE)

    async def settle(self, fh: bytes) -> None:
        """Land every WRITE on its way to ``fh`` (before reading it or its attributes);
        errors wait for the writer's next call."""
        for writes in list(self._open.get(fh, ())):
            if writes in self._open.get(fh, ()) and writes.flights:
                # landing or not: _land waits its turn
                writes.error = await self._land_all(writes)

    async def sync(self, writes: FileWrites) -> None:
        """Land the file's WRITEs and COMMIT them; the first error of any."""
        error = await self._land_all(writes)
        if error is None:
            # A reader that settled the file may have landed a failed WRITE of ours while
            # we waited our turn; it kept the error for the writer: we are that writer.
            error, writes.error = writes.error, None
        if error is not None:
            raise error
        await writes.uncommitted.commit()

    async def _make_room(self, writes: FileWrites, offset: int, length: int) -> None:
        """Land flights until this one may go: never two overlapping WRITEs on their way
        (the server may apply them in either order), never more than the window.

        Every landing is an await, during which other tasks may send: the files are
        looked at again after each, and the WRITE goes only once one look, with no
        await in it, found nothing in its way.
        """
        while True:
            other = next((o for o in self._open.get(writes.fh, ())
                          if o.overlaps(offset, length)), None)
            if other is not None:
                await self._land(other)
            elif writes.flights and (writes.flight_bytes + length > self.window
                                     or len(writes.flights) >= self.calls):
                await self._land(writes)
            else:
                return

    async def _land(self, writes: FileWrites) -> None:
        """Take the reply to the oldest WRITE on its way; raise its error.

        One task at a time per file, and the WRITE stays on the file's flights (so
        readers, who settle first, wait for it) until its reply is in: a read must
        never pass a WRITE that another task is still landing.
        """
        async with writes.landing:
            if writes.flights:
                await self._land_first(writes)

    async def _land_first(self, writes: FileWrites) -> None:
        flight = writes.flights[0]
        if flight.started is None:
            self._start(writes, flight)  # gathered: it goes now, nothing joins it any more
        assert flight.started is not None
        try:
            reply = await flight.started.result()
            done = reply.written
            while done < len(flight.data):  # the server took less: the rest, now
                reply = await self.nfs.write(writes.fh, flight.offset + done,
                                             bytes(flight.data[done:]), L.UNSTABLE)
                if reply.written == 0:
                    raise OSError(errno.EIO, "the server wrote nothing")
                done += reply.written
        except OSError:
            self.on_failed(writes.fh)  # the size the store assumed may be wrong
            raise
        finally:
            writes.flights.popleft()
            writes.flight_bytes -= len(flight.data)
            count = self._flying[writes.fh] - 1
            if count:
                self._flying[writes.fh] = count
            else:
                del self._flying[writes.fh]
        await writes.uncommitted.note(flight.offset, flight.data, reply)

    async def _land_all(self, writes: FileWrites) -> OSError | None:
        """Land every flight of the file; the first error, if any (also one kept before)."""
        error, writes.error = writes.error, None
        while writes.flights:
            try:
                await self._land(writes)
            except OSError as exc:
                error = error or exc
        return error
