"""The handle numbers the kernel holds for open files and directories.

The fs layer hands them out itself, from one counter per table, and never reuses
one: a store's own handle (a local descriptor, an NFS store's counter) is a value
in the table, never its key. Two stores may hand out the same small integer; if
that integer were the key, one volume's writes would go into another's file.

A number the kernel sends that is not in the table (it never should be) is
EBADF: logged once, then answered quietly.
"""

from __future__ import annotations

import errno
import itertools
import logging
from dataclasses import dataclass
from typing import Generic, NoReturn, TypeVar

from pyfuse3 import FUSEError

from volfs.fs.inodes import BackedNode
from volfs.stores.base import FileHandle

log = logging.getLogger(__name__)

T = TypeVar("T")

_REPORTED_MAX = 1024  # unknown numbers remembered, so each is logged once


@dataclass(frozen=True, slots=True)
class OpenFile:
    """A file open through the mount: its node, and the handle its store gave it."""

    node: BackedNode
    store_fh: FileHandle


class HandleTable(Generic[T]):
    """Open things by the number the kernel was given for them."""

    def __init__(self, what: str) -> None:
        self._what = what  # "file" or "directory", for the log
        self._open: dict[int, T] = {}
        self._numbers = itertools.count(1)
        self._reported: set[int] = set()

    def __len__(self) -> int:
        return len(self._open)

    def add(self, value: T) -> int:
        """A new number for ``value``: never one handed out before."""
        number = next(self._numbers)
        self._open[number] = value
        return number

    def restore(self, number: int, value: T) -> None:
        """Give ``value`` the number a previous daemon gave it (see skip_to)."""
        self._open[number] = value

    def skip_to(self, next_number: int) -> None:
        """Never give out a number below ``next_number`` (a previous daemon gave those)."""
        current = next(self._numbers)
        self._numbers = itertools.count(max(current, next_number))

    def get(self, number: int) -> T:
        """What ``number`` stands for; FUSEError(EBADF) if it stands for nothing."""
        value = self._open.get(number)
        if value is None:
            self._unknown(number)
        return value

    def pop(self, number: int) -> T:
        """What ``number`` stood for, now closed; FUSEError(EBADF) if nothing."""
        value = self._open.pop(number, None)
        if value is None:
            self._unknown(number)
        return value

    def _unknown(self, number: int) -> NoReturn:
        if number not in self._reported:
            if len(self._reported) >= _REPORTED_MAX:
                self._reported.clear()
            self._reported.add(number)
            log.error("the kernel used %s handle %d, which is not open: EBADF",
                      self._what, number)
        raise FUSEError(errno.EBADF)
