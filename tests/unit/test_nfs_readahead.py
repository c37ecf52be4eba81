"""Read-ahead of one NFS file, against a fake server that records the READs it is sent."""

from __future__ import annotations

import errno

import pytest
import trio
import trio.testing

from volfs.stores.nfs.nfs3 import ReadReply
from volfs.stores.nfs.readahead import READ_AHEAD, READ_AHEAD_WINDOWS, ReadAhead

MiB = 1024 * 1024
FH = b"file"


class FakeReply:
    def __init__(self, reply: ReadReply | OSError) -> None:
        self.reply = reply

    async def result(self) -> ReadReply:
        await trio.lowlevel.checkpoint()
        if isinstance(self.reply, OSError):
            raise self.reply
        return self.reply


class FakeReads:
    """A file of ``size`` bytes; ``started`` and ``read`` record the READs asked for."""

    def __init__(self, size: int) -> None:
        self.content = (bytes(range(251)) * (size // 251 + 1))[:size]
        self.started: list[tuple[int, int]] = []
        self.read_now: list[tuple[int, int]] = []
        self.failing: set[int] = set()  # offsets whose READ of read-ahead fails
        self.error: OSError | None = None  # what a READ sent now gives instead of data

    def _reply(self, offset: int, count: int) -> ReadReply:
        data = self.content[offset: offset + count]
        return ReadReply(data, offset + count >= len(self.content), None)

    def start_read(self, fh: bytes, offset: int, count: int) -> FakeReply:
        assert fh == FH
        self.started.append((offset, count))
        if offset in self.failing:
            return FakeReply(OSError(errno.EIO, "lost"))
        return FakeReply(self._reply(offset, count))

    async def read(self, fh: bytes, offset: int, count: int) -> ReadReply:
        assert fh == FH
        self.read_now.append((offset, count))
        await trio.lowlevel.checkpoint()
        if self.error is not None:
            raise self.error
        return self._reply(offset, count)


def _read(reads: ReadAhead, *spans: tuple[int, int]) -> list[bytes]:
    async def main() -> list[bytes]:
        return [await reads.read(offset, size) for offset, size in spans]

    return trio.run(main)


def test_a_stream_from_the_start_keeps_windows_ahead_ending_on_their_size() -> None:
    server = FakeReads(64 * MiB)
    reads = ReadAhead(server, FH, rsize=MiB)
    [got] = _read(reads, (0, 128 * 1024))
    assert got == server.content[: 128 * 1024]
    assert server.read_now == [(0, 128 * 1024)]  # nothing was ahead yet
    assert server.started == [(128 * 1024, MiB - 128 * 1024)] + [
        (n * MiB, MiB) for n in range(1, READ_AHEAD_WINDOWS)]


def test_reads_the_windows_cover_send_no_read_of_their_own() -> None:
    server = FakeReads(64 * MiB)
    reads = ReadAhead(server, FH, rsize=MiB)
    got = _read(reads, (0, MiB), (MiB, MiB), (2 * MiB, MiB))
    assert b"".join(got) == server.content[: 3 * MiB]
    assert server.read_now == [(0, MiB)]
    # Each read moved the stream on by one window: one more READ started past it.
    assert server.started[-1] == ((READ_AHEAD_WINDOWS + 2) * MiB, MiB)
    assert [w.offset for w in reads.windows] == [
        n * MiB for n in range(3, 3 + READ_AHEAD_WINDOWS)]


def test_a_read_elsewhere_stops_the_read_ahead() -> None:
    server = FakeReads(64 * MiB)
    reads = ReadAhead(server, FH, rsize=MiB)
    _read(reads, (0, MiB))
    started = len(server.started)
    [got] = _read(reads, (5 * MiB, 4096))  # inside a window: still served from it
    assert got == server.content[5 * MiB: 5 * MiB + 4096]
    assert len(server.started) == started and not reads.windows
    [got] = _read(reads, (40 * MiB, 4096))
    assert got == server.content[40 * MiB: 40 * MiB + 4096]
    assert server.read_now[-1] == (40 * MiB, 4096)
    assert len(server.started) == started  # random reads read only what is asked


def test_the_end_of_the_file_ends_the_read_ahead() -> None:
    server = FakeReads(MiB + MiB // 2)
    reads = ReadAhead(server, FH, rsize=MiB)
    got = _read(reads, (0, MiB), (MiB, MiB))
    assert got[1] == server.content[MiB:]  # short: the end
    assert server.read_now == [(0, MiB)]
    assert not reads.windows


def test_a_window_that_failed_is_read_again_and_its_error_is_the_one_given() -> None:
    server = FakeReads(64 * MiB)
    server.failing.add(MiB)
    reads = ReadAhead(server, FH, rsize=MiB)
    got = _read(reads, (0, MiB), (MiB, MiB))
    assert got[1] == server.content[MiB: 2 * MiB]
    assert server.read_now == [(0, MiB), (MiB, MiB)]

    server = FakeReads(64 * MiB)
    server.failing.add(MiB)
    reads = ReadAhead(server, FH, rsize=MiB)
    _read(reads, (0, MiB))
    server.error = OSError(errno.ESTALE, "gone")
    with pytest.raises(OSError) as info:
        _read(reads, (MiB, MiB))
    assert info.value.errno == errno.ESTALE


def test_reads_larger_than_rsize_are_split() -> None:
    server = FakeReads(64 * MiB)
    reads = ReadAhead(server, FH, rsize=256 * 1024)
    [got] = _read(reads, (100, 600 * 1024))
    assert got == server.content[100: 100 + 600 * 1024]
    assert server.read_now == [(100, 256 * 1024), (100 + 256 * 1024, 256 * 1024),
                               (100 + 512 * 1024, 88 * 1024)]
    assert all(count <= 256 * 1024 for _, count in server.started)
    assert READ_AHEAD > 256 * 1024  # the windows are the smaller of the two


def test_reads_of_one_stream_sent_together_each_continue_it() -> None:
    server = FakeReads(64 * MiB)
    reads = ReadAhead(server, FH, rsize=MiB)
    got: dict[int, bytes] = {}

    async def one(offset: int) -> None:
        got[offset] = await reads.read(offset, MiB)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(one, 0)
            await trio.testing.wait_all_tasks_blocked()  # the first waits for its READ
            nursery.start_soon(one, MiB)

    trio.run(main)
    assert got == {0: server.content[:MiB], MiB: server.content[MiB: 2 * MiB]}
    assert server.read_now == [(0, MiB)]  # the second was not taken for a random read
    assert reads.sequential == 2


def test_forgotten_windows_are_read_again() -> None:
    server = FakeReads(64 * MiB)
    reads = ReadAhead(server, FH, rsize=MiB)
    _read(reads, (0, MiB))
    reads.forget()
    assert not reads.windows
    _read(reads, (MiB, MiB))
    assert server.read_now == [(0, MiB), (MiB, MiB)]  # not from a window read before
    assert reads.windows[0].offset == 2 * MiB
