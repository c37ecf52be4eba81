"""Live usage of one volume, and the limit it may not pass.

Usage is the logical size of the volume's regular files, each inode counted
once however many names it has: what ``du --apparent-size`` would say. That
figure is exact and cheap to keep up to date from the write path (a sparse hole
counts, so a truncate to 1 TiB is refused by a 64 MiB limit, as users expect).
Directories, symlinks and extended attributes are not counted.

Every store holds one ``Usage``. Growth goes through :meth:`Usage.admit` before a
byte is stored, so nothing past the limit ever reaches the backing store.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass


class QuotaExceeded(OSError):
    def __init__(self) -> None:
        super().__init__(errno.ENOSPC, os.strerror(errno.ENOSPC))


@dataclass
class Usage:
    """Bytes in use and the limit (None: unlimited) of one volume."""

    limit: int | None = None
    used: int = 0

    def available(self) -> int | None:
        """Bytes that may still be added, or None when there is no limit."""
        if self.limit is None:
            return None
        return max(0, self.limit - self.used)

    def admit(self, growth: int) -> int:
        """How many of ``growth`` new bytes fit (all, some, or none).

        The caller stores at most that many and then calls :meth:`grow` with
        what it really stored.
        """
        room = self.available()
        return growth if room is None else min(growth, room)

    def require(self, growth: int) -> None:
        """All-or-nothing growth (truncate, O_TRUNC-less extends): ENOSPC if it does not fit."""
        if growth > 0 and self.admit(growth) < growth:
            raise QuotaExceeded()

    def grow(self, delta: int) -> None:
        """Record a change in stored bytes (negative when space is freed)."""
        self.used = max(0, self.used + delta)


def scan_usage(base: str) -> int:
    """The usage of the tree at ``base``, measured from disk (run it in a thread).

    Used when a volume is served again after a restart: the disk, not a
    counter that a crash may have left behind, is the truth.
    """
    seen: set[tuple[int, int]] = set()
    total = 0
    stack = [base]
    while stack:
        directory = stack.pop()
        try:
            entries = list(os.scandir(directory))
        except FileNotFoundError:
            continue
        for entry in entries:
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                stack.append(entry.path)
            elif stat.S_ISREG(st.st_mode) and (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total
