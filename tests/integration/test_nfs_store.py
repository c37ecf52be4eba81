"""NfsStore called directly (no FUSE mount) against a real nfs-ganesha.

The middle layer: every store call goes over the wire to the worker's server,
and what it did is checked on the export directory itself.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.integration.nfs import Ganesha, NfsShare
from volfs.ganesha import free_port
from volfs.stores.base import AttrChanges, Owner
from volfs.stores.nfs import (
    NfsStore,
    ServerUnreachable,
    mkdirs,
    open_store,
    remove_tree,
    rename,
    scrub,
    usage,
)
from volfs.stores.nfs.share import clients
from volfs.stores.nfs.writebehind import COALESCE
from volfs.stores.quota import QuotaExceeded

USER = Owner(1000, 1000)


def run(fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    return trio.run(fn, *args)


async def _open(share: NfsShare, capacity: int | None = None, **options: object) -> NfsStore:
    return await open_store(share.server, share.path(**options), capacity_bytes=capacity)


def test_objects_are_made_with_the_callers_owner_and_mode(nfs_share: NfsShare) -> None:
    async def main() -> None:
        store = await _open(nfs_share)
        root = (await store.open_root()).handle
        d = await store.mkdir(root, b"dir", stat.S_IFDIR | 0o750, USER)
        fh, f = await store.create(d.handle, b"file", stat.S_IFREG | 0o640, os.O_WRONLY, USER)
        assert await store.write(fh, 0, b"hello nfs") == 9
        await store.flush(fh)
        await store.release(fh)
        link = await store.symlink(root, b"link", b"dir/file", USER)
        assert await store.readlink(link.handle) == b"dir/file"
        assert stat.S_ISLNK(link.attrs.st_mode)
        fifo = await store.mknod(root, b"fifo", stat.S_IFIFO | 0o600, 0, USER)
        assert stat.S_ISFIFO(fifo.attrs.st_mode)
        assert sorted(await store.listdir(root)) == [b"dir", b"fifo", b"link"]
        assert (await store.lookup(d.handle, b"file")).key == f.key
        await store.close()

    run(main)
    on_disk = nfs_share.dir
    for name, mode in (("dir", 0o750), ("dir/file", 0o640), ("fifo", 0o600)):
        st = os.lstat(on_disk / name)
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 1000, mode), name
    assert (on_disk / "dir/file").read_bytes() == b"hello nfs"
    assert os.readlink(on_disk / "link") == "dir/file"
    assert os.lstat(on_disk / "link").st_uid == 1000
    assert stat.S_ISFIFO(os.lstat(on_disk / "fifo").st_mode)


def test_a_setgid_directory_gives_new_objects_its_group(nfs_share: NfsShare) -> None:
    shared = nfs_share.dir / "team"
    shared.mkdir()
    os.chown(shared, 0, 4242)
    shared.chmod(0o2777)

    async def main() -> None:
        store = await _open(nfs_share)
        team = await store.lookup((await store.open_root()).handle, b"team")
        fh, _ = await store.create(team.handle, b"f", stat.S_IFREG | 0o644, os.O_WRONLY, USER)
        await store.release(fh)
        await store.mkdir(team.handle, b"sub", stat.S_IFDIR | 0o755, USER)
        await store.close()

    run(main)
    assert os.stat(shared / "f").st_gid == 4242
    assert os.stat(shared / "f").st_uid == 1000
    assert os.stat(shared / "sub").st_gid == 4242


def test_hard_links_are_one_object_and_renames_keep_handles(nfs_share: NfsShare) -> None:
    (nfs_share.dir / "a" / "b").mkdir(parents=True)
    (nfs_share.dir / "a" / "b" / "f").write_bytes(b"payload")

    async def main() -> None:
        store = await _open(nfs_share)
        root = (await store.open_root()).handle
        a = await store.lookup(root, b"a")
        b = await store.lookup(a.handle, b"b")
        f = await store.lookup(b.handle, b"f")
        st = await store.link(f.handle, root, b"twin")
        assert st.st_nlink == 2
        assert (await store.lookup(root, b"twin")).key == f.key
        # Renaming a directory above an object leaves its handle good.
        await store.rename(root, b"a", root, b"moved", 0)
        fh = await store.open(f.handle, os.O_RDONLY)
        assert await store.read(fh, 0, 100) == b"payload"
        await store.release(fh)
        assert (await store.getattr(f.handle)).st_size == 7
        with pytest.raises(FileNotFoundError):
            await store.lookup(root, b"a")
        with pytest.raises(OSError) as info:
            await store.rename(root, b"twin", root, b"moved", 0)  # a file over a directory
        assert info.value.errno in (errno.EISDIR, errno.EEXIST, errno.ENOTDIR)
        await store.close()

    run(main)
    assert (nfs_share.dir / "moved" / "b" / "f").read_bytes() == b"payload"


def test_rename_noreplace_and_exchange(nfs_share: NfsShare) -> None:
    (nfs_share.dir / "x").write_text("x")
    (nfs_share.dir / "y").write_text("y")

    async def main() -> None:
        store = await _open(nfs_share)
        root = (await store.open_root()).handle
        with pytest.raises(FileExistsError):
            await store.rename(root, b"x", root, b"y", 1)  # RENAME_NOREPLACE
        with pytest.raises(OSError) as info:
            await store.rename(root, b"x", root, b"y", 2)  # RENAME_EXCHANGE
        assert info.value.errno == errno.EINVAL
        await store.close()

    run(main)
    assert (nfs_share.dir / "y").read_text() == "y"


def test_an_unlinked_open_file_stays_readable_until_released(nfs_share: NfsShare) -> None:
    (nfs_share.dir / "tmp").write_bytes(b"still here")

    async def main() -> None:
        store = await _open(nfs_share)
        root = (await store.open_root()).handle
        f = await store.lookup(root, b"tmp")
        fh = await store.open(f.handle, os.O_RDONLY)
        await store.unlink(root, b"tmp")
        assert await store.listdir(root) == []
        with pytest.raises(FileNotFoundError):
            await store.lookup(root, b"tmp")
        assert await store.read(fh, 0, 100) == b"still here"
        await store.release(fh)
        await store.close()

    run(main)
    assert os.listdir(nfs_share.dir) == []


def test_an_unlinked_open_file_has_no_link_left(nfs_share: NfsShare) -> None:
    """The hidden name it lives on is the store's, not the volume's: nlink 0, as fstat
    gives on any filesystem after the last name of an open file is removed."""
    (nfs_share.dir / "tmp").write_bytes(b"x")
    (nfs_share.dir / "over").write_bytes(b"y")
    (nfs_share.dir / "twin").write_bytes(b"z")
    os.link(nfs_share.dir / "twin", nfs_share.dir / "twin2")

    async def main() -> None:
        store = await _open(nfs_share)
        root = (await store.open_root()).handle
        f, over, twin = [await store.lookup(root, n) for n in (b"tmp", b"over", b"twin")]
        held = [await store.open(e.handle, os.O_RDONLY) for e in (f, over, twin)]
        await store.unlink(root, b"tmp")
        await store.rename(root, b"twin2", root, b"over", 0)  # replaces an open file
        await store.unlink(root, b"twin")  # one name of two: the other is left
        assert (await store.getattr(f.handle)).st_nlink == 0
        assert (await store.getattr(over.handle)).st_nlink == 0
        assert (await store.getattr(twin.handle)).st_nlink == 1
        for fh in held:
            await store.release(fh)
        await store.close()

    run(main)
    assert sorted(os.listdir(nfs_share.dir)) == ["over"]


def test_extended_attributes_are_not_supported(nfs_share: NfsShare) -> None:
    async def main() -> None:
        store = await _open(nfs_share)
        root = (await store.open_root()).handle
        for call in (store.setxattr(root, b"user.a", b"1"), store.getxattr(root, b"user.a"),
                     store.listxattr(root), store.removexattr(root, b"user.a")):
            with pytest.raises(OSError) as info:
                await call
            assert info.value.errno == errno.ENOTSUP
        await store.close()

    run(main)


def test_append_truncate_setattr_and_statfs(nfs_share: NfsShare) -> None:
    (nfs_share.dir / "log").write_bytes(b"one\n")

    async def main() -> None:
        store = await _open(nfs_share)
        root = (await store.open_root()).handle
        f = await store.lookup(root, b"log")
        fh = await store.open(f.handle, os.O_WRONLY | os.O_APPEND)
        await store.write(fh, 0, b"two\n")  # appended, whatever the offset
        await store.release(fh)
        st = await store.setattr(f.handle, AttrChanges(mode=0o600, mtime_ns=10**18), None)
        assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_mtime_ns == 10**18
        st = await store.setattr(f.handle, AttrChanges(size=3), None)
        assert st.st_size == 3
        fh = await store.open(f.handle, os.O_WRONLY | os.O_TRUNC)
        await store.release(fh)
        assert (await store.getattr(f.handle)).st_size == 0
        vfs = await store.statfs()
        assert vfs.f_blocks > 0 and vfs.f_bsize == 4096
        await store.close()

    run(main)
    assert (nfs_share.dir / "log").stat().st_size == 0


def test_many_calls_in_flight_at_once(nfs_share: NfsShare) -> None:
    blocks = {i: os.urandom(128 * 1024) for i in range(32)}

    async def main() -> None:
        store = await _open(nfs_share)
        root = (await store.open_root()).handle
        fh, f = await store.create(root, b"big", stat.S_IFREG | 0o644, os.O_RDWR, USER)
        async with trio.open_nursery() as nursery:
            for i, block in blocks.items():
                nursery.start_soon(store.write, fh, i * len(block), block)
        got: dict[int, bytes] = {}

        async def read(i: int) -> None:
            got[i] = await store.read(fh, i * 128 * 1024, 128 * 1024)

        async with trio.open_nursery() as nursery:
            for i in blocks:
                nursery.start_soon(read, i)
        # Which blocks differ (a diff of 4 MiB of bytes would take pytest minutes).
        assert [i for i in blocks if got[i] != blocks[i]] == []
        await store.release(fh)
        await store.close()

    run(main)
    assert (nfs_share.dir / "big").read_bytes() == b"".join(blocks[i] for i in range(32))


def test_writes_behind_land_in_order_and_are_read_back(nfs_share: NfsShare) -> None:
    async def main() -> None:
        store = await _open(nfs_share)
        root = (await store.open_root()).handle
        fh, f = await store.create(root, b"w", stat.S_IFREG | 0o644, os.O_RDWR, USER)
        for i in range(50):  # the same bytes, over and over: the last one wins
            await store.write(fh, 4096, bytes([i]) * 8192)
            await store.write(fh, 100_000 + i, b"x")
        assert (await store.getattr(f.handle)).st_size == 100_050  # counts what is on its way
        assert await store.read(fh, 4096, 8192) == bytes([49]) * 8192
        second = await store.open(f.handle, os.O_RDONLY)
        assert await store.read(second, 100_000, 100) == b"x" * 50
        await store.release(second)
        await store.release(fh)
        await store.close()

    run(main)
    data = (nfs_share.dir / "w").read_bytes()
    assert data[4096:12288] == bytes([49]) * 8192 and len(data) == 100_050


def test_a_file_kept_open_under_small_appends_holds_bounded_memory(
        nfs_share: NfsShare) -> None:
    """A log file that a process appends to for hours without closing it: what the
    store holds for it stays bounded by counts, not only by bytes."""
    records = [b"%06d\n" % n for n in range(20_000)]

    async def main() -> None:
        store = await _open(nfs_share)
        root = (await store.open_root()).handle
        fh, _ = await store.create(root, b"log", stat.S_IFREG | 0o644,
                                   os.O_WRONLY | os.O_APPEND, USER)
        most_flights = most_pieces = 0
        for record in records:
            await store.write(fh, 0, record)
            held = store.write_backlog
            most_flights = max(most_flights, held.flights)
            most_pieces = max(most_pieces, held.unstable_pieces)
        await store.flush(fh)
        await store.release(fh)
        assert store.write_backlog.flights == store.write_backlog.unstable_pieces == 0
        await store.close()
        assert most_flights <= 64, most_flights  # WRITES_IN_FLIGHT
        assert most_pieces <= 20_000 * 7 // COALESCE + 2, most_pieces  # joined, not one each

    run(main)
    assert (nfs_share.dir / "log").read_bytes() == b"".join(records)


def test_read_ahead_follows_the_file(nfs_share: NfsShare) -> None:
    content = bytearray(os.urandom(5 << 20))
    (nfs_share.dir / "r").write_bytes(content)
    chunk = 128 * 1024

    async def main() -> None:
        store = await _open(nfs_share)
        f = await store.lookup((await store.open_root()).handle, b"r")
        fh = await store.open(f.handle, os.O_RDWR)
        for offset in range(0, len(content), chunk):  # sequential: read ahead
            assert await store.read(fh, offset, chunk) == content[offset:offset + chunk]
        assert await store.read(fh, len(content), chunk) == b""
        for offset in (3 << 20, 7, 1 << 20, (5 << 20) - 10):  # random
            assert await store.read(fh, offset, 1000) == content[offset:offset + 1000]
        for offset in range(0, 2 << 20, chunk):  # sequential again, then a write in the middle
            await store.read(fh, offset, chunk)
            if offset == 512 * 1024:
                await store.write(fh, (2 << 20) - 5, b"NEW")
                content[(2 << 20) - 5:(2 << 20) - 2] = b"NEW"
        assert await store.read(fh, (2 << 20) - 10, 10) == content[(2 << 20) - 10:2 << 20]
        await store.release(fh)
        await store.close()

    run(main)


def test_reads_of_one_stream_at_once_get_their_own_bytes(nfs_share: NfsShare) -> None:
    """The kernel sends a stream's reads several at a time; each must get its range."""
    content = os.urandom((6 << 20) + 12345)
    (nfs_share.dir / "c").write_bytes(content)
    got: dict[tuple[int, int], bytes] = {}

    async def read(store: NfsStore, fh: int, offset: int, size: int) -> None:
        got[offset, size] = await store.read(fh, offset, size)

    async def main() -> None:
        store = await _open(nfs_share)
        f = await store.lookup((await store.open_root()).handle, b"c")
        fh = await store.open(f.handle, os.O_RDONLY)
        # Whole MiB, then 768 KiB pieces that straddle the read-ahead windows, to the end.
        for size in (1 << 20, 768 << 10):
            offsets = range(0, len(content) + size, size)
            for at in range(0, len(offsets), 4):
                async with trio.open_nursery() as nursery:
                    for offset in offsets[at:at + 4]:
                        nursery.start_soon(read, store, fh, offset, size)
            for offset in offsets:
                assert got[offset, size] == content[offset:offset + size], (offset, size)
        await store.release(fh)
        await store.close()

    run(main)


def test_capacity_is_enforced_with_enospc_and_nothing_past_it(nfs_share: NfsShare) -> None:
    (nfs_share.dir / "old").write_bytes(b"o" * 300_000)  # measured at set-up
    limit = 1_000_000

    async def main() -> None:
        store = await _open(nfs_share, capacity=limit)
        assert store.track_usage and store.usage.used == 300_000
        root = (await store.open_root()).handle
        fh, f = await store.create(root, b"new", stat.S_IFREG | 0o644, os.O_WRONLY, USER)
        assert await store.write(fh, 0, b"n" * 600_000) == 600_000
        assert await store.write(fh, 600_000, b"n" * 200_000) == 100_000  # short: the rest
        with pytest.raises(QuotaExceeded):
            await store.write(fh, 700_000, b"n")
        assert store.usage.used == limit
        with pytest.raises(OSError) as info:
            await store.setattr(f.handle, AttrChanges(size=2 * limit), None)
        assert info.value.errno == errno.ENOSPC
        assert await store.write(fh, 0, b"N" * 1000) == 1000  # overwriting needs no room
        await store.release(fh)
        await store.unlink(root, b"old")
        assert store.usage.used == 700_000
        await store.close()

    run(main)
    assert (nfs_share.dir / "new").stat().st_size == 700_000
    assert not (nfs_share.dir / "old").exists()


def test_usage_counts_each_file_once(nfs_share: NfsShare) -> None:
    (nfs_share.dir / "d" / "e").mkdir(parents=True)
    (nfs_share.dir / "d" / "e" / "f").write_bytes(b"x" * 5000)
    os.link(nfs_share.dir / "d" / "e" / "f", nfs_share.dir / "hard")
    (nfs_share.dir / "g").write_bytes(b"y" * 7)
    assert trio.run(usage, nfs_share.server, nfs_share.path(), "") == 5007


def test_share_directories_for_provisioning_and_reclaim(ganesha: Ganesha,
                                                        nfs_share: NfsShare) -> None:
    server, share, opts = ganesha.server, nfs_share.export, ganesha.mount_options
    trio.run(mkdirs, server, share, "ns/claim-1", opts)
    trio.run(mkdirs, server, share, "ns/claim-1", opts)  # again: nothing to do
    made = nfs_share.dir / "ns" / "claim-1"
    assert made.is_dir() and stat.S_IMODE(made.stat().st_mode) == 0o777
    (made / "sub").mkdir()
    (made / "sub" / "f").write_text("data")
    (made / "g").write_text("more")

    trio.run(scrub, server, str(made), "", opts)
    assert made.is_dir() and os.listdir(made) == []

    (made / "keep").write_text("archived")
    trio.run(rename, server, share, "ns/claim-1", "archive/archived-claim-1", opts)
    assert not made.exists()
    assert (nfs_share.dir / "archive" / "archived-claim-1" / "keep").read_text() == "archived"
    with pytest.raises(FileExistsError):
        trio.run(rename, server, share, "ns", "archive/archived-claim-1", opts)

    (nfs_share.dir / "ns" / "x" / "y").mkdir(parents=True)
    (nfs_share.dir / "ns" / "x" / "y" / "z").write_text("z")
    trio.run(remove_tree, server, share, "ns", opts)
    trio.run(remove_tree, server, share, "ns", opts)  # gone already: nothing to do
    assert sorted(os.listdir(nfs_share.dir)) == ["archive"]
    with pytest.raises(ValueError):
        trio.run(remove_tree, server, share, "", opts)
    with pytest.raises(ValueError):
        trio.run(mkdirs, server, share, "../escape", opts)


def test_a_missing_directory_is_refused(nfs_share: NfsShare) -> None:
    with pytest.raises(FileNotFoundError) as info:
        run(open_store, nfs_share.server, nfs_share.ganesha.path(nfs_share.sub_dir + "/nope"))
    assert "no such directory" in str(info.value)


def test_a_server_that_is_not_there_is_refused_quickly(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    started = time.monotonic()
    with pytest.raises(ServerUnreachable) as info:
        run(open_store, "127.0.0.1", f"/x?nfsport={port}&mountport={port}&soft&timeo=5&retrans=1")
    assert str(info.value) == "server not responding (connection refused)"
    assert time.monotonic() - started < 5


def _ticker(gaps: list[float]) -> Callable[[], Awaitable[None]]:
    async def tick() -> None:
        last = trio.current_time()
        while True:
            await trio.sleep(0.01)
            now = trio.current_time()
            gaps.append(now - last)
            last = now

    return tick


@pytest.mark.slow
def test_a_stopped_server_gives_eio_within_the_soft_timeout_then_recovers(
        own_ganesha: Ganesha) -> None:
    (own_ganesha.export_dir / "f").write_bytes(b"before")
    gaps: list[float] = []

    async def main() -> None:
        path = own_ganesha.path(soft=True, timeo=10, retrans=1)  # 1 s, twice: 2 s
        store = await open_store(own_ganesha.server, path)
        root = (await store.open_root()).handle
        f = await store.lookup(root, b"f")
        fh = await store.open(f.handle, os.O_RDWR)
        assert await store.write(fh, 0, b"BEFORE") == 6
        await store.flush(fh)  # on the server: the outage must not take it
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_ticker(gaps))
            await trio.to_thread.run_sync(own_ganesha.stop)
            started = trio.current_time()
            # The write is sent behind the caller's back; its error comes at the flush.
            assert await store.write(fh, 6, b" during") == 7
            with pytest.raises(OSError) as info:
                await store.flush(fh)
            waited = trio.current_time() - started
            assert info.value.errno == errno.EIO
            assert 1.0 <= waited < 4.0, waited
            await trio.to_thread.run_sync(own_ganesha.start)
            assert await store.write(fh, 6, b" after") == 6  # service resumes
            await store.flush(fh)
            nursery.cancel_scope.cancel()
        await store.release(fh)
        assert len(clients()) == 1
        await store.close()
        assert len(clients()) == 0

    run(main)
    assert (own_ganesha.export_dir / "f").read_bytes() == b"BEFORE after"
    assert max(gaps) < 0.5, "the loop was blocked while the server was away"


@pytest.mark.slow
def test_hard_waits_through_an_outage_but_not_without_end(own_ganesha: Ganesha) -> None:
    (own_ganesha.export_dir / "f").write_bytes(b"x")

    async def main() -> None:
        path = own_ganesha.path(hard=True, timeo=5, retrans=1, retry=0.05)  # bound: 3 s
        store = await open_store(own_ganesha.server, path)
        f = await store.lookup((await store.open_root()).handle, b"f")
        own_ganesha.stop()
        started = trio.current_time()
        with pytest.raises(OSError) as info:
            await store.getattr(f.handle)
        assert info.value.errno == errno.EIO
        assert 2.5 <= trio.current_time() - started < 6
        async with trio.open_nursery() as nursery:  # an outage shorter than the bound
            async def restart() -> None:
                await trio.sleep(1.0)
                await trio.to_thread.run_sync(own_ganesha.start)

            nursery.start_soon(restart)
            assert (await store.getattr(f.handle)).st_size == 1
        await store.close()

    run(main)
