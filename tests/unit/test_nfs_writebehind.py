"""Write-behind of NFS files, against a fake server that records the WRITEs it is sent
and checks that no two overlapping WRITEs of one object are ever on their way at once."""

from __future__ import annotations

import errno
import random

import pytest
import trio
import trio.testing

from volfs.stores.nfs import _libnfs as L
from volfs.stores.nfs.nfs3 import Written
from volfs.stores.nfs.writebehind import FileWrites, WriteBehind

FH = b"file"
K = 4096


class FakeFlight:
    """A WRITE sent UNSTABLE; the server applies it when its reply is taken."""

    def __init__(self, server: FakeWrites, fh: bytes, offset: int, data: bytes) -> None:
        self.server, self.fh, self.offset, self.data = server, fh, offset, data
        self.gate: trio.Event | None = server.gates.pop(offset, None)

    def overlaps(self, other: FakeFlight) -> bool:
        return self.fh == other.fh and self.offset < other.offset + len(other.data) \
            and other.offset < self.offset + len(self.data)

    async def result(self) -> Written:
        if self.gate is not None:
            await self.gate.wait()
        for _ in range(self.server.rng.randrange(3) if self.server.rng else 1):
            await trio.lowlevel.checkpoint()
        server = self.server
        server.out.remove(self)
        server.log.append(("landed", self.offset))
        if self.offset in server.failing:
            raise OSError(errno.EIO, "the server failed this WRITE")
        written = server.short.pop(self.offset, len(self.data))
        server.apply(self.fh, self.offset, self.data[:written])
        return Written(written, server.stable, server.verifier, None)


class FakeWrites:
    def __init__(self, rng: random.Random | None = None) -> None:
        self.rng = rng
        self.log: list[tuple[object, ...]] = []
        self.out: list[FakeFlight] = []  # WRITEs on their way
        self.overlapping: list[tuple[int, int]] = []
        self.gates: dict[int, trio.Event] = {}  # offset -> the reply waits for it
        self.failing: set[int] = set()
        self.short: dict[int, int] = {}  # offset -> bytes the server takes of that WRITE
        self.stable = L.UNSTABLE
        self.verifier = b"boot-1.."
        self.commit_verifier: bytes | None = None  # what COMMIT answers, if not the verifier
        self.files: dict[bytes, bytearray] = {}

    def apply(self, fh: bytes, offset: int, data: bytes) -> None:
        content = self.files.setdefault(fh, bytearray())
        if len(content) < offset + len(data):
            content.extend(bytes(offset + len(data) - len(content)))
        content[offset: offset + len(data)] = data

    def start_write(self, fh: bytes, offset: int, data: bytes, stable: int) -> FakeFlight:
        assert stable == L.UNSTABLE
        flight = FakeFlight(self, fh, offset, data)
        self.overlapping += [(f.offset, offset) for f in self.out if f.overlaps(flight)]
        self.out.append(flight)
        self.log.append(("start", offset, len(data)))
        return flight

    async def write(self, fh: bytes, offset: int, data: bytes, stable: int) -> Written:
        await trio.lowlevel.checkpoint()
        self.log.append(("write", offset, len(data), stable))
        self.apply(fh, offset, data)
        return Written(len(data), stable, self.verifier, None)

    async def commit(self, fh: bytes) -> bytes:
        await trio.lowlevel.checkpoint()
        self.log.append(("commit",))
        return self.commit_verifier or self.verifier


def _behind(server: FakeWrites, **options: int) -> tuple[WriteBehind, list[bytes]]:
    """Write-behind over ``server``; gathering off (every send one WRITE) unless the test
    sets ``gather``."""
    failed: list[bytes] = []
    options.setdefault("gather", 1)
    return WriteBehind(server, on_failed=failed.append, name="test", **options), failed


def _starts(server: FakeWrites) -> list[int]:
    return [entry[1] for entry in server.log if entry[0] == "start"]  # type: ignore[misc]


def test_writes_that_do_not_overlap_go_out_without_waiting() -> None:
    server = FakeWrites()
    behind, _ = _behind(server)

    async def main() -> None:
        writes = behind.open(FH)
        for n in range(4):
            await behind.send(writes, n * K, b"%d" % n * K)
        assert [e[0] for e in server.log] == ["start"] * 4  # no reply taken yet
        assert behind.flying(FH) and writes.pending
        await behind.sync(writes)
        assert not behind.flying(FH) and not writes.pending

    trio.run(main)
    assert server.log[4:] == [("landed", n * K) for n in range(4)] + [("commit",)]
    assert bytes(server.files[FH]) == b"".join(b"%d" % n * K for n in range(4))


def test_an_overlapping_write_waits_for_the_one_before_it() -> None:
    server = FakeWrites()
    behind, _ = _behind(server)

    async def main() -> None:
        writes = behind.open(FH)
        await behind.send(writes, 0, b"a" * K)
        await behind.send(writes, K, b"b" * K)
        await behind.send(writes, K // 2, b"c" * K)  # over both
        await behind.sync(writes)

    trio.run(main)
    assert server.log[:5] == [("start", 0, K), ("start", K, K), ("landed", 0), ("landed", K),
                              ("start", K // 2, K)]
    assert not server.overlapping
    assert bytes(server.files[FH]) == b"a" * (K // 2) + b"c" * K + b"b" * (K // 2)


def test_an_overlapping_write_of_another_open_file_of_the_object_waits_too() -> None:
    server = FakeWrites()
    behind, _ = _behind(server)

    async def main() -> None:
        first, second = behind.open(FH), behind.open(FH)
        await behind.send(first, 0, b"a" * K)
        await behind.send(second, 0, b"b" * K)
        await behind.sync(second)
        assert not first.flights  # landed for the second's sake
        behind.release(first)
        behind.release(second)

    trio.run(main)
    assert server.log[:3] == [("start", 0, K), ("landed", 0), ("start", 0, K)]
    assert bytes(server.files[FH]) == b"b" * K


def test_no_more_than_the_window_is_on_its_way() -> None:
    server = FakeWrites()
    behind, _ = _behind(server, window=3 * K)

    async def main() -> None:
        writes = behind.open(FH)
        for n in range(5):
            await behind.send(writes, n * K, b"x" * K)
            assert writes.flight_bytes <= 3 * K

    trio.run(main)
    assert server.log[:5] == [("start", 0, K), ("start", K, K), ("start", 2 * K, K),
                              ("landed", 0), ("start", 3 * K, K)]


def test_a_failed_write_is_reported_once_at_the_writers_next_call() -> None:
    server = FakeWrites()
    server.failing.add(K)
    behind, failed = _behind(server)

    async def main() -> FileWrites:
        writes = behind.open(FH)
        await behind.send(writes, 0, b"a" * K)
        await behind.send(writes, K, b"b" * K)
        await behind.settle(FH)  # a reader: it waits, the error waits for the writer
        assert not behind.flying(FH)
        return writes

    writes = trio.run(main)
    assert failed == [FH]  # the store is told its size may be wrong
    with pytest.raises(OSError) as info:
        behind.check(writes)
    assert info.value.errno == errno.EIO
    behind.check(writes)  # once


def test_a_failed_write_fails_the_flush_that_lands_it() -> None:
    server = FakeWrites()
    server.failing.add(0)
    behind, failed = _behind(server)

    async def main() -> None:
        writes = behind.open(FH)
        await behind.send(writes, 0, b"a" * K)
        await behind.send(writes, K, b"b" * K)
        with pytest.raises(OSError) as info:
            await behind.sync(writes)
        assert info.value.errno == errno.EIO
        assert not writes.flights  # every one landed all the same
        await behind.sync(writes)  # reported once

    trio.run(main)
    assert failed == [FH]
    assert ("commit",) in server.log  # the second sync committed what did land


def test_a_sync_fails_when_a_reader_landed_its_failed_write_first() -> None:
    """A reader that settles the file lands the failing WRITE while the writer's fsync
    waits its turn: the fsync must still fail, never answer that the bytes are safe."""
    server = FakeWrites()
    server.failing.add(0)
    gate = server.gates[0] = trio.Event()
    behind, _ = _behind(server)
    outcome: list[object] = []

    async def writer(writes: FileWrites) -> None:
        try:
            await behind.sync(writes)
            outcome.append("synced")
        except OSError as exc:
            outcome.append(exc.errno)

    async def main() -> None:
        writes = behind.open(FH)
        await behind.send(writes, 0, b"a" * K)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(behind.settle, FH)
            await trio.testing.wait_all_tasks_blocked()  # the reader is landing it
            nursery.start_soon(writer, writes)
            await trio.testing.wait_all_tasks_blocked()  # the fsync waits its turn
            gate.set()

    trio.run(main)
    assert outcome == [errno.EIO]


def test_what_the_server_did_not_take_is_sent_at_once() -> None:
    server = FakeWrites()
    server.short[0] = 1000
    behind, _ = _behind(server)

    async def main() -> None:
        writes = behind.open(FH)
        await behind.send(writes, 0, b"z" * K)
        await behind.sync(writes)

    trio.run(main)
    assert ("write", 1000, K - 1000, L.UNSTABLE) in server.log
    assert bytes(server.files[FH]) == b"z" * K


def test_unstable_data_is_written_again_file_sync_when_the_server_restarted() -> None:
    server = FakeWrites()
    behind, _ = _behind(server)

    async def main() -> None:
        writes = behind.open(FH)
        await behind.send(writes, 0, b"a" * K)
        await behind.settle(FH)
        server.verifier = b"boot-2.."  # restarted: it may have lost the first WRITE
        server.files[FH][:] = b""
        await behind.send(writes, K, b"b" * K)
        await behind.sync(writes)

    trio.run(main)
    assert server.log[:4] == [("start", 0, K), ("landed", 0), ("start", K, K), ("landed", K)]
    assert server.log[4:] == [("write", 0, K, L.FILE_SYNC), ("commit",)]
    assert bytes(server.files[FH]) == b"a" * K + b"b" * K


def test_a_commit_with_a_new_verifier_writes_again_and_commits_again() -> None:
    server = FakeWrites()
    behind, _ = _behind(server)

    async def main() -> None:
        writes = behind.open(FH)
        await behind.send(writes, 0, b"a" * K)
        await behind.send(writes, K, b"b" * K)
        await behind.settle(FH)
        server.commit_verifier = b"boot-2.."
        await behind.sync(writes)
        assert not writes.uncommitted.unstable and not writes.pending

    trio.run(main)  # the two contiguous writes were kept as one piece
    assert server.log[4:] == [("commit",), ("write", 0, 2 * K, L.FILE_SYNC), ("commit",)]


def test_file_sync_replies_keep_nothing_and_need_no_commit() -> None:
    server = FakeWrites()
    server.stable = L.FILE_SYNC
    behind, _ = _behind(server)

    async def main() -> None:
        writes = behind.open(FH)
        await behind.send(writes, 0, b"a" * K)
        await behind.sync(writes)
        assert not writes.uncommitted.unstable

    trio.run(main)
    assert ("commit",) not in server.log


def test_unstable_data_past_the_limit_is_committed_early() -> None:
    server = FakeWrites()
    behind, _ = _behind(server, unstable_limit=2 * K)

    async def main() -> None:
        writes = behind.open(FH)
        for n in range(3):
            await behind.send(writes, n * K, b"x" * K)
        await behind.settle(FH)
        assert not writes.uncommitted.dirty and writes.uncommitted.unstable_bytes == 0

    trio.run(main)
    assert server.log[-1] == ("commit",)


def test_a_file_has_a_bounded_number_of_writes_on_their_way() -> None:
    server = FakeWrites()
    behind, _ = _behind(server, calls=8)

    async def main() -> None:
        writes = behind.open(FH)
        for n in range(100):  # tiny appends: far under the window in bytes
            await behind.send(writes, 3 * n, b"[%d]" % (n % 10))
            assert len(writes.flights) <= 8
        await behind.sync(writes)

    trio.run(main)
    assert bytes(server.files[FH]) == b"".join(b"[%d]" % (n % 10) for n in range(100))


def test_small_appends_are_kept_as_one_piece_and_written_again_whole() -> None:
    server = FakeWrites()
    behind, _ = _behind(server, coalesce=64)

    async def main() -> None:
        writes = behind.open(FH)
        for n in range(40):
            await behind.send(writes, 4 * n, b"%04d" % n)
        await behind.settle(FH)
        assert [(start, len(piece)) for start, piece in writes.uncommitted.unstable] == [
            (0, 64), (64, 64), (128, 32)]
        server.commit_verifier = b"boot-2.."  # the server lost them: written again
        server.files[FH][:] = b""
        await behind.sync(writes)

    trio.run(main)
    rewrites = [entry for entry in server.log if entry[0] == "write"]
    assert rewrites == [("write", 0, 64, L.FILE_SYNC), ("write", 64, 64, L.FILE_SYNC),
                        ("write", 128, 32, L.FILE_SYNC)]
    assert bytes(server.files[FH]) == b"".join(b"%04d" % n for n in range(40))


def test_scattered_small_writes_past_the_piece_limit_are_committed_early() -> None:
    server = FakeWrites()
    behind, _ = _behind(server, unstable_pieces=10)

    async def main() -> None:
        writes = behind.open(FH)
        for n in range(25):  # every other 8 bytes: nothing to join
            await behind.send(writes, 16 * n, b"x" * 8)
            await behind.settle(FH)
            assert len(writes.uncommitted.unstable) <= 10
        await behind.sync(writes)

    trio.run(main)
    assert server.log.count(("commit",)) == 3  # two early (after 11 and 22 pieces), one at sync


def test_a_reader_never_passes_a_write_another_task_is_landing() -> None:
    server = FakeWrites()
    gate = server.gates[0] = trio.Event()
    behind, _ = _behind(server)
    order: list[str] = []

    async def writer(writes: FileWrites) -> None:
        await behind.sync(writes)
        order.append("synced")

    async def reader() -> None:
        await behind.settle(FH)
        order.append("read")

    async def main() -> None:
        writes = behind.open(FH)
        await behind.send(writes, 0, b"a" * K)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer, writes)
            await trio.testing.wait_all_tasks_blocked()  # the writer is landing it
            nursery.start_soon(reader)
            await trio.testing.wait_all_tasks_blocked()
            assert order == [] and writes.flights  # still on the file's flights
            gate.set()
            await trio.testing.wait_all_tasks_blocked()
            assert ("landed", 0) in server.log and "read" in order

    trio.run(main)


def test_released_files_no_longer_count() -> None:
    server = FakeWrites()
    behind, _ = _behind(server)

    async def main() -> None:
        writes = behind.open(FH)
        await behind.send(writes, 0, b"a" * K)
        await behind.sync(writes)
        behind.release(writes)
        await behind.settle(FH)  # nothing open, nothing to wait for
        again = behind.open(FH)
        await behind.send(again, 0, b"b" * K)
        await behind.sync(again)

    trio.run(main)
    assert not server.overlapping


def test_writers_that_waited_together_still_do_not_overlap() -> None:
    """Two writers wait for a third file's WRITE to land; the first to go must be
    landed by the second, though the second had looked at its file before."""
    server = FakeWrites()
    gate = server.gates[0] = trio.Event()
    behind, _ = _behind(server)

    async def main() -> None:
        first, second, third = behind.open(FH), behind.open(FH), behind.open(FH)
        await behind.send(third, 0, b"c" * K)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(behind.send, second, 0, b"b" * K)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(behind.send, first, 0, b"a" * K)
            await trio.testing.wait_all_tasks_blocked()
            gate.set()
        for writes in (first, second, third):
            await behind.sync(writes)

    trio.run(main)
    assert not server.overlapping


def test_small_contiguous_writes_go_out_as_one_write() -> None:
    server = FakeWrites()
    behind, _ = _behind(server, gather=K)

    async def main() -> None:
        writes = behind.open(FH)
        for n in range(10):  # 10 writes of 1 KiB: a WRITE of 4 KiB, another, and 2 KiB
            await behind.send(writes, n * 1024, b"%d" % n * 1024)
        assert _starts(server) == [0, K]  # the full ones went at once
        assert behind.flying(FH)  # the last 2 KiB wait, gathered, but count as on their way
        await behind.sync(writes)

    trio.run(main)
    assert [e for e in server.log if e[0] == "start"] == [
        ("start", 0, K), ("start", K, K), ("start", 2 * K, 2048)]
    assert bytes(server.files[FH]) == b"".join(b"%d" % n * 1024 for n in range(10))


def test_a_write_that_does_not_continue_sends_the_gathered_one_first() -> None:
    server = FakeWrites()
    behind, _ = _behind(server, gather=4 * K)

    async def main() -> None:
        writes = behind.open(FH)
        await behind.send(writes, 0, b"a" * 1024)
        await behind.send(writes, 8 * K, b"b" * 1024)
        assert _starts(server) == [0]
        await behind.settle(FH)  # a read: what is gathered goes, and lands
        assert _starts(server) == [0, 8 * K] and not behind.flying(FH)

    trio.run(main)


def test_a_gathered_write_never_passes_an_earlier_write_of_its_own_range() -> None:
    """A large WRITE of 8..16 KiB is out (its reply held back); small writes from 0 on
    are gathered; the one that reaches 8 KiB must wait for the large one, not join the
    gathered WRITE that would then be out with it."""
    server = FakeWrites()
    gate = server.gates[8 * K] = trio.Event()
    behind, _ = _behind(server, gather=16 * K)

    async def main() -> None:
        writes = behind.open(FH)
        await behind.send(writes, 8 * K, b"L" * 16 * K)
        async with trio.open_nursery() as nursery:
            async def small() -> None:
                for n in range(4):
                    await behind.send(writes, n * 4 * K, b"%d" % n * 4 * K)
            nursery.start_soon(small)
            await trio.testing.wait_all_tasks_blocked()
            gate.set()
        await behind.sync(writes)

    trio.run(main)
    assert not server.overlapping
    content = bytes(server.files[FH])
    assert content[8 * K: 12 * K] == b"2" * 4 * K and content[12 * K: 16 * K] == b"3" * 4 * K
    assert content[16 * K: 24 * K] == b"L" * 8 * K


def test_another_files_write_waits_for_the_gathered_write_it_overlaps() -> None:
    server = FakeWrites()
    behind, _ = _behind(server, gather=16 * K)

    async def main() -> None:
        first, second = behind.open(FH), behind.open(FH)
        await behind.send(first, 0, b"a" * K)
        await behind.send(first, K, b"a" * K)
        await behind.send(second, K, b"b" * 512)  # later: it must win
        await behind.sync(first)
        await behind.sync(second)

    trio.run(main)
    assert not server.overlapping
    assert bytes(server.files[FH]) == b"a" * K + b"b" * 512 + b"a" * (K - 512)


@pytest.mark.parametrize("gather", [1, 2 * K, 5 * K])
@pytest.mark.parametrize("seed", range(20))
def test_many_writers_and_readers_of_one_object_never_overlap(seed: int, gather: int) -> None:
    """Writers on three open files of one object send overlapping writes at random while
    readers settle: no two overlapping WRITEs are ever out, a settle returns only once
    the WRITEs out when it began have landed, and the server ends up with the bytes of
    the WRITEs in the order they were sent."""
    rng = random.Random(seed)
    server = FakeWrites(rng)
    behind, _ = _behind(server, window=6 * K, gather=gather)
    model = bytearray()
    passed: list[str] = []

    def send_order(offset: int, data: bytes) -> None:
        if len(model) < offset + len(data):
            model.extend(bytes(offset + len(data) - len(model)))
        model[offset: offset + len(data)] = data

    async def writer(writes: FileWrites, name: int) -> None:
        for n in range(30):
            offset = rng.randrange(0, 16 * K, 512)
            data = bytes([name * 40 + n]) * rng.choice((512, K, 2 * K))
            await behind.send(writes, offset, data)
            send_order(offset, data)  # no await since start_write: the order sent
            for _ in range(rng.randrange(3)):
                await trio.lowlevel.checkpoint()
        await behind.sync(writes)

    async def reader() -> None:
        for _ in range(20):
            before = list(server.out)
            await behind.settle(FH)
            if any(f in server.out for f in before):
                passed.append("a read passed a WRITE")
            await trio.lowlevel.checkpoint()

    async def main() -> None:
        files = [behind.open(FH) for _ in range(3)]
        async with trio.open_nursery() as nursery:
            for name, writes in enumerate(files):
                nursery.start_soon(writer, writes, name)
            nursery.start_soon(reader)
            nursery.start_soon(reader)
        assert not behind.flying(FH)

    trio.run(main)
    assert not server.overlapping
    assert not passed
    assert bytes(server.files[FH]) == bytes(model)
