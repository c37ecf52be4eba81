"""The inode table: FUSE inode numbers, and what each one stands for.

An inode is either *synthetic* (a directory of the made-up tree, named by its
path) or *backed* (an object in a volume's store, named by the store's handle).
Backed inodes are keyed by (volume, the store's identity of the object), so the
two names of a hard link are one FUSE inode, with one nlink and one mode, and two
volumes whose stores name objects alike (two NFS volumes on one export, two
EmptyDirs on one disk) never share an inode. The volume in the key is the object
itself, not its ``id()``: a node keeps its volume alive, so a key is never mistaken
for a later volume's.

Lookup counts are exact: every reply that hands the kernel an inode adds one,
``forget`` subtracts, and a backed inode whose count reaches zero lets go of its
handle at once. Inode numbers are never reused, so generation stays 0.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import pyfuse3

from volfs.fs.journal import NodeJournal
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
    parent: int = 0
    """The inode of the directory the kernel last found this one in: what ``..`` lists.
    A directory renamed elsewhere shows its new parent once the kernel looks it up
    there again (when its entry times out)."""


Node = SyntheticNode | BackedNode


class InodeTable:
    def __init__(self) -> None:
        root = SyntheticNode(pyfuse3.ROOT_INODE, ())
        self._nodes: dict[int, Node] = {root.ino: root}
        self._synthetic: dict[Path, SyntheticNode] = {(): root}
        self._backed: dict[tuple[ServedVolume, Hashable], BackedNode] = {}
        self._next_ino = pyfuse3.ROOT_INODE + 1
        self.journal: NodeJournal | None = None  # --keep-connection: numbers written down

    def attach(self, journal: NodeJournal) -> None:
        """Write every number given out from now on (and those given so far) in ``journal``."""
        self.journal = journal
        for node in self._nodes.values():
            self._write_down(node)

    def restore_synthetic(self, ino: int, path: Path) -> None:
        """Give ``path`` the number a previous daemon gave it (before any is allocated)."""
        node = SyntheticNode(ino, path)
        self._synthetic[path] = node
        self._nodes[ino] = node

    def restore_backed(self, ino: int, volume: ServedVolume, entry: Entry) -> None:
        """Give a reopened object the number a previous daemon gave it. Its lookup count
        is not known: it is kept (never let go) until unmount."""
        node = BackedNode(ino, volume, entry.handle, entry.key, nlookup=1 << 62)
        self._backed[(volume, entry.key)] = node
        self._nodes[ino] = node

    def skip_to(self, next_ino: int) -> None:
        """Never give out a number below ``next_ino`` (a previous daemon gave those)."""
        self._next_ino = max(self._next_ino, next_ino)

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
            self._write_down(node)
        return node

    def drop_synthetic(self, prefix: Path) -> None:
        """Forget the synthetic directories at and below ``prefix`` (a pod went away)."""
        for path in [p for p in self._synthetic if p[: len(prefix)] == prefix and p]:
            ino = self._synthetic.pop(path).ino
            del self._nodes[ino]
            if self.journal is not None:
                self.journal.dropped(ino)

    def adopt(self, volume: ServedVolume, entry: Entry) -> BackedNode:
        """The node for an object a store just found or made (lookup count unchanged).

        If the object already has a node, the fresh handle is given back to the
        store and the existing node is returned.
        """
        table_key = (volume, entry.key)
        node = self._backed.get(table_key)
        if node is not None:
            volume.store.forget(entry.handle)
            return node
        node = BackedNode(self._allocate(), volume, entry.handle, entry.key)
        self._backed[table_key] = node
        self._nodes[node.ino] = node
        self._write_down(node)
        return node

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
        del self._backed[(node.volume, node.key)]
        node.volume.store.forget(node.handle)
        if self.journal is not None:
            self.journal.dropped(node.ino)

    def backed_count(self) -> int:
        return len(self._backed)

    def _write_down(self, node: Node) -> None:
        if self.journal is None:
            return
        if isinstance(node, SyntheticNode):
            self.journal.synthetic(node.ino, node.path)
        else:  # a local store's handle says how to reopen it (a kernel file handle)
            self.journal.backed(node.ino, node.volume.path,
                                getattr(node.handle, "file_handle", None))

    def _allocate(self) -> int:
        ino = self._next_ino
        self._next_ino += 1
        return ino
