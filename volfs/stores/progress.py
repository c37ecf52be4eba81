"""Progress of long work on a volume's data (wiping an EmptyDir, emptying or deleting a
directory on a share): what is being done, how many entries so far, since when.

The work counts entries as it removes them, so counting costs nothing extra; the total
is rarely known without a second walk, and then only the count and the rate are
shown. A :class:`Progress` is written by one worker (a thread or a task) and read by
the API: its fields are plain values, so a reader sees a recent count, never a torn one.
"""

from __future__ import annotations

import contextlib
import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from volfs.api.times import timestamp_now

__all__ = ["Progress", "remove_tree"]


@dataclass
class Progress:
    """One piece of work, counted as it goes.

    Example::

        progress = Progress("Deleting volume scratch")
        remove_tree(path, progress)
        progress.summary()      # '20,020 entries in 0.8s'
    """

    action: str
    total: int | None = None
    unit: str = "entries"
    done: int = 0
    started: float = field(default_factory=time.monotonic)
    started_at: str = field(default_factory=timestamp_now)

    def add(self, count: int = 1) -> None:
        self.done += count

    def seconds(self) -> float:
        return time.monotonic() - self.started

    def as_status(self) -> dict[str, Any]:
        """The work as an object's ``status.operation`` shows it while it runs."""
        return {"action": self.action, "done": self.done, "total": self.total,
                "unit": self.unit, "startedAt": self.started_at,
                "ratePerSecond": round(self.done / max(self.seconds(), 1e-3), 1)}

    def summary(self) -> str:
        """``20,020 entries in 0.8s``: for the event that ends the work."""
        return f"{self.done:,} {self.unit} in {self.seconds():.1f}s"


def remove_tree(path: Path, progress: Progress) -> None:
    """Remove ``path`` and everything below it, counting each entry below it in
    ``progress``; nothing to do if it is gone. Blocking: run it in a worker thread.

    Symbolic links are removed, never followed: every name is resolved against an open
    directory, and a directory is opened with ``O_NOFOLLOW``, so a link swapped in for
    a directory cannot lead the removal out of the tree. The walk keeps one descriptor
    per level of the tree, not per directory, and no recursion.
    """
    try:
        if not stat.S_ISDIR(os.lstat(path).st_mode):
            path.unlink(missing_ok=True)
            return
    except FileNotFoundError:
        return
    stack = [_Level(os.open(path, _DIRECTORY), "")]
    try:
        while stack:
            level = stack[-1]
            if level.subdirs is None:
                level.subdirs = _remove_all_but_subdirs(level.fd, progress)
            if level.subdirs:
                name = level.subdirs.pop()
                with contextlib.suppress(FileNotFoundError):  # gone meanwhile
                    stack.append(_Level(os.open(name, _DIRECTORY, dir_fd=level.fd), name))
                continue
            stack.pop()
            os.close(level.fd)
            if stack:  # emptied: remove it from its parent
                os.rmdir(level.name, dir_fd=stack[-1].fd)
                progress.add()
    finally:
        for level in stack:
            os.close(level.fd)
    path.rmdir()


_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass
class _Level:
    """A directory being emptied: its descriptor, its name in its parent, and the
    subdirectories still to empty (None until it was read)."""

    fd: int
    name: str
    subdirs: list[str] | None = None


def _remove_all_but_subdirs(fd: int, progress: Progress) -> list[str]:
    """Unlink every entry of the directory ``fd`` but its subdirectories: their names."""
    subdirs = []
    with os.scandir(fd) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                subdirs.append(entry.name)
                continue
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.name, dir_fd=fd)
                progress.add()
    return subdirs
