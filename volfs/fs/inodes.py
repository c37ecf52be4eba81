"""The inode table: FUSE inode numbers, and what each one stands for.

An inode is either *synthetic* (a directory of the made-up tree, named by its
path) or *backed* (an object in a volume's store, named by the store's handle).
Backed inodes are keyed by (volume, the store's identity of the object), so the
two names of a hard link are one FUSE inode, with one nlink and one mode.

Lookup counts are exact: every reply that hands the kernel an inode adds one,
``forget`` subtracts, and a backed inode whose count reaches zero lets go of its
handle at once. Inode numbers are never reused, so generation stays 0.

A local store's handle is an open descriptor, and the kernel forgets an inode
only when its cache is under memory pressure: left alone, a volume with more
files than the daemon may open descriptors would fail with EMFILE. So the table
keeps a budget (a share of RLIMIT_NOFILE) and remembers the name each backed
node was last handed out under; past the budget, :meth:`InodeTable.to_evict`
names the least recently used entries, which the caller asks the kernel to drop
(it then sends ``forget`` as usual, and the counts stay exact).
"""

from __future__ import annotations

import resource
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import pyfuse3

from volfs.fs.tree import Path, ServedVolume
from volfs.stores.base import Entry


@dataclass(eq=False)
class SyntheticNode:
    ino: int
    path: Path


@dataclass(eq=False)
class BackedNode:
    ino: int
    volume: ServedVolume
    handle: Any
    key: Hashable
    nlookup: int = 0
    # The (parent inode, name) the kernel last learnt this node under, if it still holds.
    name: tuple[int, bytes] | None = None
    evicting: bool = False  # the kernel has been asked to drop it


Node = SyntheticNode | BackedNode

Name = tuple[int, bytes]


def default_budget() -> int:
    """How many backed nodes to hold: a third of the descriptors this process may open.

    The rest is for open files, sockets and the database, and for listings: each
    entry readdir hands out is a lookup, and while a directory is being read the
    kernel drops its entries only slowly (it needs that directory's lock).
    """
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    return max(64, soft // 3)


class InodeTable:
    def __init__(self, budget: int | None = None) -> None:
        root = SyntheticNode(pyfuse3.ROOT_INODE, ())
        self._nodes: dict[int, Node] = {root.ino: root}
        self._synthetic: dict[Path, SyntheticNode] = {(): root}
        self._backed: dict[tuple[int, Hashable], BackedNode] = {}
        self._next_ino = pyfuse3.ROOT_INODE + 1
        self.budget = default_budget() if budget is None else budget
        # Backed nodes, least recently handed out first; and which node each name is.
        self._recent: OrderedDict[int, BackedNode] = OrderedDict()
        self._names: dict[Name, BackedNode] = {}
        self._evicting = 0

    def __len__(self) -> int:
        return len(self._nodes)

    def get(self, ino: int) -> Node | None:
        return self._nodes.get(ino)

    def synthetic(self, path: Path) -> SyntheticNode:
        """The node of a synthetic directory; the same number for as long as it exists."""
        node = self._synthetic.get(path)
        if node is None:
            node = SyntheticNode(self._allocate(), path)
            self._synthetic[path] = node
            self._nodes[node.ino] = node
        return node

    def drop_synthetic(self, prefix: Path) -> None:
        """Forget the synthetic directories at and below ``prefix`` (a pod went away)."""
        for path in [p for p in self._synthetic if p[: len(prefix)] == prefix and p]:
            del self._nodes[self._synthetic.pop(path).ino]

    def adopt(self, volume: ServedVolume, entry: Entry) -> BackedNode:
        """The node for an object a store just found or made (lookup count unchanged).

        If the object already has a node, the fresh handle is given back to the
        store and the existing node is returned.
        """
        table_key = (id(volume), entry.key)
        node = self._backed.get(table_key)
        if node is not None:
            volume.store.forget(entry.handle)
            return node
        node = BackedNode(self._allocate(), volume, entry.handle, entry.key)
        self._backed[table_key] = node
        self._nodes[node.ino] = node
        self._recent[node.ino] = node
        return node

    # -- names, for asking the kernel to forget ------------------------------------

    def named(self, node: BackedNode, parent: int, name: bytes) -> None:
        """The kernel just learnt ``node`` as ``name`` in directory ``parent`` (and used it)."""
        if node.name is not None and self._names.get(node.name) is node:
            del self._names[node.name]
        node.name = (parent, name)
        self._names[node.name] = node
        if node.evicting:
            node.evicting = False
            self._evicting -= 1
        self._recent.move_to_end(node.ino)

    def name_removed(self, parent: int, name: bytes) -> None:
        """``name`` in ``parent`` is gone (unlink, rmdir)."""
        node = self._names.pop((parent, name), None)
        if node is not None and node.name == (parent, name):
            node.name = None

    def name_moved(self, old: Name, new: Name, exchange: bool) -> None:
        """A rename: what was ``old`` is now ``new`` (and, for an exchange, the reverse)."""
        moved = self._names.pop(old, None)
        other = self._names.pop(new, None)
        for node, src, dst in ((moved, old, new), (other if exchange else None, new, old)):
            if node is not None and node.name == src:
                node.name = dst
                self._names[dst] = node
        if other is not None and not exchange and other.name == new:
            other.name = None  # replaced: that name now belongs to the moved node

    def crowded(self) -> bool:
        """Whether more handles are held than the budget (the kernel has not forgotten yet)."""
        return len(self._backed) > self.budget

    def to_evict(self) -> list[Name]:
        """Names to ask the kernel to drop, least recently used first, once over budget.

        Above the budget, enough nodes are named to come back to 3/4 of it; a node
        named once is not named again until it is handed out again.
        """
        held = len(self._backed) - self._evicting
        if held <= self.budget:
            return []
        want = held - self.budget * 3 // 4
        names: list[Name] = []
        for node in self._recent.values():
            if len(names) >= want:
                break
            if not node.evicting and node.name is not None:
                node.evicting = True
                self._evicting += 1
                names.append(node.name)
        return names

    def forget(self, ino: int, count: int) -> None:
        node = self._nodes.get(ino)
        if isinstance(node, BackedNode):
            node.nlookup -= count
            self.drop_if_unused(node)

    def drop_if_unused(self, node: BackedNode) -> None:
        """Let go of a backed node nobody holds (count zero): close its handle."""
        if node.nlookup > 0 or self._nodes.get(node.ino) is not node:
            return
        del self._nodes[node.ino]
        del self._backed[(id(node.volume), node.key)]
        del self._recent[node.ino]
        if node.name is not None and self._names.get(node.name) is node:
            del self._names[node.name]
        if node.evicting:
            self._evicting -= 1
        node.volume.store.forget(node.handle)

    def backed_count(self) -> int:
        return len(self._backed)

    def _allocate(self) -> int:
        ino = self._next_ino
        self._next_ino += 1
        return ino
