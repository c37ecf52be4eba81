"""The inode table without a mount: lookup counts, forget, and the descriptor budget."""

from __future__ import annotations

import os
from collections.abc import Hashable
from dataclasses import dataclass, field

from volfs.fs.inodes import BackedNode, InodeTable, default_budget
from volfs.fs.tree import ServedVolume
from volfs.stores.base import Entry


@dataclass
class FakeStore:
    """Only what the table calls: forget, which must close each handle exactly once."""

    forgotten: list[int] = field(default_factory=list)

    def forget(self, handle: int) -> None:
        assert handle not in self.forgotten, f"handle {handle} forgotten twice"
        self.forgotten.append(handle)


def _entry(handle: int, ino: int) -> Entry:
    st = os.stat_result((0o100644, ino, 1, 1, 0, 0, 0, 0, 0, 0))
    return Entry(handle, st)


def _table(budget: int = 8) -> tuple[InodeTable, ServedVolume, FakeStore]:
    store = FakeStore()
    volume = ServedVolume("uid", "kubernetes.io~empty-dir", "v", store)  # type: ignore[arg-type]
    return InodeTable(budget=budget), volume, store


def _hand_out(table: InodeTable, volume: ServedVolume, handle: int, key_ino: int,
              parent: int = 1, name: bytes | None = None) -> BackedNode:
    node = table.adopt(volume, _entry(handle, key_ino))
    node.nlookup += 1
    table.named(node, parent, name if name is not None else b"n%d" % key_ino)
    return node


def test_two_names_of_one_object_are_one_node_and_the_spare_handle_is_closed() -> None:
    table, volume, store = _table()
    a = _hand_out(table, volume, 100, 7, name=b"a")
    b = _hand_out(table, volume, 101, 7, name=b"b")
    assert a is b and a.nlookup == 2 and a.handle == 100
    assert store.forgotten == [101]
    table.forget(a.ino, 1)
    assert table.get(a.ino) is a and store.forgotten == [101]
    table.forget(a.ino, 1)
    assert table.get(a.ino) is None and store.forgotten == [101, 100]
    assert table.backed_count() == 0


def test_under_budget_nothing_is_evicted() -> None:
    table, volume, _ = _table(budget=8)
    for i in range(8):
        _hand_out(table, volume, 100 + i, i)
    assert not table.crowded()
    assert table.to_evict() == []


def test_over_budget_the_least_recently_used_names_are_evicted_once() -> None:
    table, volume, store = _table(budget=8)
    nodes = [_hand_out(table, volume, 100 + i, i) for i in range(9)]
    _hand_out(table, volume, 200, 0)  # n0 used again: now the most recent
    assert table.crowded()
    names = table.to_evict()
    assert names == [(1, b"n1"), (1, b"n2"), (1, b"n3")]  # back to 3/4 of the budget
    assert table.to_evict() == []  # asked once; the kernel's forgets are awaited
    for node in nodes[1:4]:  # the kernel forgets them
        table.forget(node.ino, node.nlookup)
    assert not table.crowded() and table.backed_count() == 6
    assert sorted(store.forgotten) == [101, 102, 103, 200]


def test_a_node_used_again_while_being_evicted_counts_as_held() -> None:
    table, volume, _ = _table(budget=4)
    for i in range(5):
        _hand_out(table, volume, 100 + i, i)
    assert table.to_evict() == [(1, b"n0"), (1, b"n1")]
    _hand_out(table, volume, 300, 0)  # the kernel looked n0 up again before forgetting it
    assert table.to_evict() == []  # n0 is held again, n1 still on its way out: 4 held
    _hand_out(table, volume, 105, 5)
    assert table.to_evict() == [(1, b"n2"), (1, b"n3")]


def test_unlinked_and_renamed_names_follow_their_nodes() -> None:
    table, volume, _ = _table(budget=3)
    a = _hand_out(table, volume, 100, 1, name=b"a")
    b = _hand_out(table, volume, 101, 2, name=b"b")
    c = _hand_out(table, volume, 102, 3, name=b"c")
    table.name_moved((1, b"a"), (5, b"moved"), exchange=False)
    table.name_removed(1, b"b")
    table.name_moved((1, b"c"), (5, b"moved"), exchange=False)  # c replaces a's new name
    assert (a.name, b.name, c.name) == (None, None, (5, b"moved"))
    d = _hand_out(table, volume, 103, 4, name=b"d")
    e = _hand_out(table, volume, 104, 5, name=b"e")
    table.name_moved((1, b"d"), (1, b"e"), exchange=True)
    assert (d.name, e.name) == ((1, b"e"), (1, b"d"))
    # Nameless nodes cannot be evicted; the others can, oldest first.
    assert table.to_evict() == [(5, b"moved"), (1, b"e"), (1, b"d")]


def test_hard_link_names_the_node_by_its_newest_name() -> None:
    table, volume, _ = _table()
    node = _hand_out(table, volume, 100, 1, name=b"first")
    table.named(node, 2, b"second")
    table.name_removed(1, b"first")  # the old name no longer maps to it
    assert node.name == (2, b"second")


def test_default_budget_is_a_third_of_the_descriptor_limit() -> None:
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert default_budget() == max(64, soft // 3)


def test_handles_are_keys_not_identities() -> None:
    table, volume, _ = _table()
    keys: set[Hashable] = set()
    for i in range(3):
        node = _hand_out(table, volume, 100 + i, i)
        keys.add(node.key)
    assert len(keys) == 3 and table.backed_count() == 3
