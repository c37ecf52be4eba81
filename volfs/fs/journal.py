"""The numbers the kernel holds, written down so that a daemon serving a kept connection
(:mod:`volfs.fs.takeover`) can answer for them. Only with ``--keep-connection``.

The kernel names files by the inode numbers and open-file numbers an earlier daemon gave
it, and keeps using them after that daemon died. This journal is one JSON line per
event, appended as it happens (a process crash loses nothing the kernel saw: the lines
are in the page cache before the reply goes out):

- ``{"s": ino, "p": [...]}`` a synthetic directory got a number;
- ``{"b": ino, "v": [...], "h": "<file handle>"}`` a backed object of volume ``v``
  got one (a local store's object, named by its kernel file handle);
- ``{"x": ino}`` the number was let go (forgotten, or its pod deleted);
- ``{"o": fh, "i": ino, "f": flags}`` / ``{"c": fh}`` a file opened / released;
- ``{"d": fh}`` a directory opened (only so new numbers never repeat an old one).

A daemon that takes over reads it back (:func:`read`) and reopens every object and file
still in use (:meth:`Filesystem._revive`).

What it does not handle: objects of NFS volumes (their stores have no ``reopen``: the
kernel gets ENOENT for them), lookup counts (a revived node is kept until unmount),
directories open across the restart (EBADF), and compaction (it grows until unmount).
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

JOURNAL_FILE = "nodes.journal"
_VOLUME_PATHS_KEPT = 1024


@dataclass
class Records:
    """What a journal says is still held, by number."""

    synthetic: dict[int, tuple[str, ...]] = field(default_factory=dict)
    backed: dict[int, tuple[tuple[str, ...], bytes]] = field(default_factory=dict)
    files: dict[int, tuple[int, int]] = field(default_factory=dict)  # fh -> (ino, flags)
    last_ino: int = 0
    last_file: int = 0
    last_dir: int = 0


class NodeJournal:
    """The writing side. Every file made, opened, closed and forgotten adds a line here,
    so the per-file lines are formatted by hand: json.dumps costs several times the
    write itself. They are JSON all the same, read back by :func:`read`."""

    def __init__(self, state_dir: Path, *, fresh: bool) -> None:
        """Append to ``<state_dir>/nodes.journal``; ``fresh``: a new connection, start empty."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
        self._fd = os.open(state_dir / JOURNAL_FILE, flags | (os.O_TRUNC if fresh else 0),
                           0o600)
        # A volume's path, as JSON: the same few for every object of every volume.
        self._volume_paths: dict[tuple[str, ...], bytes] = {}

    def synthetic(self, ino: int, path: Sequence[str]) -> None:
        self._write({"s": ino, "p": list(path)})

    def backed(self, ino: int, volume_path: Sequence[str], file_handle: bytes | None) -> None:
        """``file_handle`` None: the object cannot be reopened (its number is still used)."""
        handle = (b"null" if file_handle is None
                  else b'"%s"' % base64.b64encode(file_handle))  # no quotes in base64
        os.write(self._fd, b'{"b":%d,"v":%s,"h":%s}\n'
                 % (ino, self._volume_path(volume_path), handle))

    def dropped(self, ino: int) -> None:
        os.write(self._fd, b'{"x":%d}\n' % ino)

    def opened(self, fh: int, ino: int, flags: int) -> None:
        os.write(self._fd, b'{"o":%d,"i":%d,"f":%d}\n' % (fh, ino, flags))

    def released(self, fh: int) -> None:
        os.write(self._fd, b'{"c":%d}\n' % fh)

    def dir_opened(self, fh: int) -> None:
        os.write(self._fd, b'{"d":%d}\n' % fh)

    def close(self) -> None:
        os.close(self._fd)

    def _volume_path(self, volume_path: Sequence[str]) -> bytes:
        key = tuple(volume_path)
        encoded = self._volume_paths.get(key)
        if encoded is None:
            if len(self._volume_paths) >= _VOLUME_PATHS_KEPT:
                self._volume_paths.clear()  # pods come and go: keep only the recent ones
            encoded = self._volume_paths[key] = json.dumps(list(key)).encode()
        return encoded

    def _write(self, record: dict[str, Any]) -> None:
        os.write(self._fd, json.dumps(record, separators=(",", ":")).encode() + b"\n")


def read(state_dir: Path) -> Records:
    """The journal's account of what the kernel still holds (a torn last line is skipped)."""
    records = Records()
    try:
        text = (state_dir / JOURNAL_FILE).read_bytes()
    except FileNotFoundError:
        return records
    for line in text.splitlines():
        try:
            _apply(records, json.loads(line))
        except (ValueError, KeyError, TypeError):
            continue
    return records


def _apply(records: Records, record: dict[str, Any]) -> None:
    if "s" in record:
        records.synthetic[record["s"]] = tuple(record["p"])
        records.last_ino = max(records.last_ino, record["s"])
    elif "b" in record:
        if record["h"] is not None:
            records.backed[record["b"]] = (tuple(record["v"]), base64.b64decode(record["h"]))
        records.last_ino = max(records.last_ino, record["b"])
    elif "x" in record:
        records.synthetic.pop(record["x"], None)
        records.backed.pop(record["x"], None)
    elif "o" in record:
        records.files[record["o"]] = (record["i"], record["f"])
        records.last_file = max(records.last_file, record["o"])
    elif "c" in record:
        records.files.pop(record["c"], None)
    elif "d" in record:
        records.last_dir = max(records.last_dir, record["d"])
