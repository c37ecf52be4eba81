"""The kernel's file and directory handles, through the Operations called without a mount.

Two stores that hand out the same handle number (a local descriptor and an NFS store's
counter can) must each get only their own calls, and a number the kernel sends that
was never handed out (or is closed) is EBADF, logged once.
"""

from __future__ import annotations

import errno
import logging
import os
from dataclasses import dataclass, field

import pyfuse3
import pytest
import trio

from volfs.fs.handles import HandleTable
from volfs.fs.inodes import BackedNode, InodeTable
from volfs.fs.operations import VolfsOperations
from volfs.fs.tree import ServedVolume, Tree
from volfs.stores.base import Entry

SAME_NUMBER = 3  # what every fake store hands out


@dataclass
class RecordingStore:
    """A store whose every open file is SAME_NUMBER: it records what it was asked to do."""

    name: str
    read_only: bool = False
    cache_timeout: float = 1.0
    outside_writers: bool = False
    calls: list[tuple[str, int, bytes]] = field(default_factory=list)
    open_files: int = 0

    def forget(self, handle: object) -> None:
        pass

    async def open(self, handle: object, flags: int, *, keep_setid: bool = False) -> int:
        self.open_files += 1
        return SAME_NUMBER

    async def write(self, fh: int, offset: int, data: bytes) -> int:
        self.calls.append(("write", fh, data))
        return len(data)

    async def read(self, fh: int, offset: int, size: int) -> bytes:
        self.calls.append(("read", fh, b""))
        return self.name.encode()

    async def flush(self, fh: int) -> None:
        self.calls.append(("flush", fh, b""))

    async def release(self, fh: int) -> None:
        self.calls.append(("release", fh, b""))
        self.open_files -= 1


def _node(table: InodeTable, store: RecordingStore, ino: int) -> BackedNode:
    volume = ServedVolume("uid", "kubernetes.io~nfs", store.name, store)  # type: ignore[arg-type]
    attrs = os.stat_result((0o100644, ino, 1, 1, 0, 0, 0, 0, 0, 0))
    node = table.adopt(volume, Entry(object(), attrs))
    node.nlookup += 1
    return node


def test_two_stores_with_the_same_handle_numbers_each_get_their_own_calls() -> None:
    table = InodeTable()
    ops = VolfsOperations(Tree(), table, "/")
    stores = [RecordingStore("a"), RecordingStore("b")]
    nodes = [_node(table, store, ino) for ino, store in enumerate(stores, 10)]

    async def main() -> None:
        ctx = pyfuse3.RequestContext()
        fhs = [(await ops.open(node.ino, os.O_RDWR, ctx)).fh for node in nodes]
        assert len(set(fhs)) == 2
        for _ in range(3):
            for fh, store in zip(fhs, stores, strict=True):
                await ops.write(fh, 0, store.name.encode())
                assert await ops.read(fh, 0, 1) == store.name.encode()
        for fh in fhs:
            await ops.flush(fh)
            await ops.release(fh)

    trio.run(main)
    for store in stores:
        writes = [data for call, _, data in store.calls if call == "write"]
        assert writes == [store.name.encode()] * 3
        assert [call for call, _, _ in store.calls][-2:] == ["flush", "release"]
        assert {fh for _, fh, _ in store.calls} == {SAME_NUMBER}
        assert store.open_files == 0


def test_an_unknown_or_closed_handle_is_ebadf_logged_once(
        caplog: pytest.LogCaptureFixture) -> None:
    table = InodeTable()
    ops = VolfsOperations(Tree(), table, "/")
    store = RecordingStore("a")
    node = _node(table, store, 10)

    async def main() -> None:
        fh = (await ops.open(node.ino, os.O_RDWR, pyfuse3.RequestContext())).fh
        await ops.release(fh)
        for call in (lambda: ops.write(fh, 0, b"x"), lambda: ops.read(fh, 0, 1),
                     lambda: ops.flush(fh), lambda: ops.release(fh),
                     lambda: ops.write(fh + 1000, 0, b"x"), lambda: ops.readdir(77, 0, None)):  # type: ignore[arg-type]
            with pytest.raises(pyfuse3.FUSEError) as raised:
                await call()  # type: ignore[no-untyped-call]
            assert raised.value.errno == errno.EBADF

    with caplog.at_level(logging.DEBUG):
        trio.run(main)
    assert store.calls == [("release", SAME_NUMBER, b"")]  # nothing reached the store again
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(errors) == 3, errors  # once per unknown number: the file's, fh+1000, dir 77
    assert not any(r.exc_info for r in caplog.records)  # no traceback


def test_numbers_are_never_handed_out_twice() -> None:
    files: HandleTable[str] = HandleTable("file")
    seen = set()
    for round_ in range(100):
        number = files.add(f"f{round_}")
        assert number not in seen
        seen.add(number)
        if round_ % 2:
            assert files.pop(number) == f"f{round_}"
    assert len(files) == 50
