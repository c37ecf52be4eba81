"""Read-ahead of one open NFS file: READs sent before they are asked for.

A file read sequentially (each read where the one before ended) keeps
``READ_AHEAD_WINDOWS`` READs of ``READ_AHEAD`` bytes on their way past the latest
request; any other read stops it. What the windows do not cover is read at once.

The kernel sends several reads of one stream at once (its own read-ahead), so a
read takes its windows before its first await: each must see the stream as the
one before left it, or the second would be mistaken for a random read.

:class:`ReadAhead` knows nothing of writes: the store makes a read wait for the
file's WRITEs first, and forgets the windows when the file changes (a write, a
truncate).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Protocol

from volfs.stores.nfs.nfs3 import ReadReply, Reply

READ_AHEAD = 1024 * 1024  # one READ of read-ahead
READ_AHEAD_WINDOWS = 8
SEQUENTIAL = 1  # sequential reads seen before read-ahead starts

class Reads(Protocol):
    """The NFS calls read-ahead makes (:class:`volfs.stores.nfs.nfs3.Nfs3` has them)."""

    def start_read(self, fh: bytes, offset: int, count: int) -> Reply[ReadReply]: ...

    async def read(self, fh: bytes, offset: int, count: int) -> ReadReply: ...


@dataclass
class Window:
    """A READ of read-ahead."""

    offset: int
    length: int
    started: Reply[ReadReply]


class ReadAhead:
    """The reads of one open file (see the module docstring)."""

    def __init__(self, nfs: Reads, fh: bytes, rsize: int) -> None:
        self.nfs = nfs
        self.fh = fh
        self.rsize = rsize  # the most one READ may ask for
        self.next_read = 0
        self.sequential = 0
        self.windows: deque[Window] = deque()

    async def read(self, offset: int, size: int) -> bytes:
        """``size`` bytes at ``offset`` (fewer at the end of the file)."""
        end = offset + size
        # Chosen before the first await: the kernel sends several reads of one stream at
        # once (its own read-ahead), and each must see the stream as the one before left it.
        windows = self.take_windows(offset, end)
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
                self.windows.clear()
                break
        if pos < end and not eof:
            data, eof = await self._read_now(pos, end - pos)
            parts.append(data)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def forget(self) -> None:
        """Drop the windows: the file changed, what they read may be stale."""
        self.windows.clear()

    def take_windows(self, offset: int, end: int) -> list[Window]:
        """The read-ahead windows that cover [offset, end), in order; read further ahead.

        A read where the last one ended continues the stream: windows it has passed are
        dropped and more are started. Any other read stops the read-ahead.
        """
        sequential = offset == self.next_read
        self.next_read = end
        self.sequential = self.sequential + 1 if sequential else 0
        covering = [w for w in self.windows if w.offset < end and offset < w.offset + w.length]
        if not sequential:
            self.windows.clear()
            return covering
        while self.windows and self.windows[0].offset + self.windows[0].length <= end:
            self.windows.popleft()
        if self.sequential >= SEQUENTIAL:
            self._read_ahead(end)
        return covering

    async def _read_now(self, offset: int, size: int) -> tuple[bytes, bool]:
        chunks, eof = [], False
        while size > 0:
            data, eof, _ = await self.nfs.read(self.fh, offset, min(size, self.rsize))
            chunks.append(data)
            offset += len(data)
            size -= len(data)
            if eof or not data:
                eof = True
                break
        return (chunks[0] if len(chunks) == 1 else b"".join(chunks)), eof

    def _read_ahead(self, pos: int) -> None:
        """Keep READ_AHEAD_WINDOWS READs on their way past ``pos``.

        Windows end on multiples of their size, as the kernel's requests do, so that a
        request is one window's bytes, passed on without a copy.
        """
        start = self.windows[-1].offset + self.windows[-1].length if self.windows else pos
        size = min(READ_AHEAD, self.rsize)
        while len(self.windows) < READ_AHEAD_WINDOWS:
            length = size - start % size
            self.windows.append(Window(start, length, self.nfs.start_read(self.fh, start, length)))
            start += length
