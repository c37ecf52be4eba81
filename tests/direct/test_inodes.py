"""The inode table without a mount: one node per object, lookup counts and forget exact."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from volfs.fs.inodes import BackedNode, InodeTable
from volfs.fs.tree import ServedVolume
from volfs.stores.base import Entry


@dataclass
class FakeStore:
    """Only what the table calls: forget, which must let go of each handle exactly once."""

    forgotten: list[int] = field(default_factory=list)

    def forget(self, handle: int) -> None:
        assert handle not in self.forgotten, f"handle {handle} forgotten twice"
        self.forgotten.append(handle)


def _entry(handle: int, ino: int) -> Entry:
    return Entry(handle, os.stat_result((0o100644, ino, 1, 1, 0, 0, 0, 0, 0, 0)))


def _table() -> tuple[InodeTable, ServedVolume, FakeStore]:
    store = FakeStore()
    volume = ServedVolume("uid", "kubernetes.io~empty-dir", "v", store)  # type: ignore[arg-type]
    return InodeTable(), volume, store


def _hand_out(table: InodeTable, volume: ServedVolume, handle: int, ino: int) -> BackedNode:
    node = table.adopt(volume, _entry(handle, ino))
    node.nlookup += 1
    return node


def test_two_names_of_one_object_are_one_node_and_the_spare_handle_is_let_go() -> None:
    table, volume, store = _table()
    a = _hand_out(table, volume, 100, 7)
    b = _hand_out(table, volume, 101, 7)
    assert a is b and a.nlookup == 2 and a.handle == 100
    assert store.forgotten == [101]
    table.forget(a.ino, 1)
    assert table.get(a.ino) is a and store.forgotten == [101]
    table.forget(a.ino, 1)
    assert table.get(a.ino) is None and store.forgotten == [101, 100]
    assert table.backed_count() == 0


def test_forget_in_batches_and_unknown_inodes() -> None:
    table, volume, store = _table()
    nodes = [_hand_out(table, volume, 100 + i, i) for i in range(5)]
    for node in nodes:
        _hand_out(table, volume, 200 + node.key[1], node.key[1])  # type: ignore[index]
    table.forget(nodes[0].ino, 2)
    table.forget(nodes[1].ino, 1)
    table.forget(10_000, 3)  # never handed out: ignored
    assert table.backed_count() == 4 and nodes[1].nlookup == 1
    assert sorted(store.forgotten) == [100] + [200 + i for i in range(5)]


def test_inode_numbers_are_never_reused() -> None:
    table, volume, _ = _table()
    first = _hand_out(table, volume, 100, 1)
    table.forget(first.ino, 1)
    again = _hand_out(table, volume, 101, 1)  # the same object, handed out anew
    assert again.ino != first.ino and table.get(first.ino) is None
