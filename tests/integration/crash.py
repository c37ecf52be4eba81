"""Writers that keep a journal of what fsync acknowledged, and its verification.

A writer appends random chunks to one file and fsyncs now and then. Each time an
fsync returns 0 it appends ``LENGTH SHA256`` to a journal outside the volume: the
checksum of the file's first LENGTH bytes, which the application was just told are
safe. Whatever then happens (the daemon killed, the NFS server gone), a later
:func:`verify` reads the file and checks every journalled prefix: an fsync'ed byte
that reads back different, or a file shorter than an acknowledged length, is a loss.

A writer ends at the first error (a killed daemon's mount answers ENOTCONN), or,
given ``resume``, waits for it, reopens the file, truncates it to the last
acknowledged length and writes on: what an application does after EIO from a soft
NFS mount. Every call's duration is measured; the longest is in the result.

Used by ``test_crash.py`` (kill -9 of the daemon) and ``test_nfs_faults.py``.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import multiprocessing
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHUNKS = (512, 4096, 65536, 131072, 1 << 20)


@dataclass
class Writer:
    """One writer process on ``path``, journalling to ``journal``."""

    path: Path
    journal: Path
    seed: int
    fsync_every: int = 4
    process: multiprocessing.Process | None = None

    def start(self, stop: Any, resume: Any = None, results: Any = None,
              errored: Any = None) -> Writer:
        """``stop``, ``resume``, ``errored``: multiprocessing Events (the writer sets
        ``errored`` at its first error); ``results``: a Queue for its figures."""
        self.process = multiprocessing.Process(
            target=write_and_journal,
            args=(str(self.path), str(self.journal), self.seed, self.fsync_every, stop,
                  resume, results, errored),
            name=f"writer {self.path}")
        self.process.start()
        return self

    def acknowledged(self) -> list[tuple[int, str]]:
        return read_journal(self.journal)


def write_and_journal(path: str, journal: str, seed: int, fsync_every: int, stop: Any,
                      resume: Any, results: Any, errored: Any) -> None:
    """The writer's body (in a process of its own); see the module docstring.

    Puts ``{"path", "errors": {errno name: count}, "longest": seconds, "fsyncs"}`` on
    ``results`` at the end, when given.
    """
    rng = random.Random(seed)
    digest = hashlib.sha256()
    length = 0
    errors: dict[str, int] = {}
    longest = 0.0
    fsyncs = 0
    with open(journal, "a", buffering=1) as log:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        pending = bytearray()  # written since the last fsync
        count = 0
        while not stop.is_set():
            chunk = rng.randbytes(rng.choice(CHUNKS))
            started = time.monotonic()
            try:
                os.write(fd, chunk)
                pending += chunk
                count += 1
                if count % fsync_every == 0:
                    os.fsync(fd)
                    digest.update(pending)
                    length += len(pending)
                    pending.clear()
                    fsyncs += 1
                    log.write(f"{length} {digest.hexdigest()}\n")
            except OSError as exc:
                name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
                errors[name] = errors.get(name, 0) + 1
                longest = max(longest, time.monotonic() - started)
                if errored is not None:
                    errored.set()
                if resume is None:
                    break
                # As an application would: drop what was not acknowledged, go on from
                # the last acknowledged length once the outage is over.
                with contextlib.suppress(OSError):
                    os.close(fd)
                resume.wait()
                fd = os.open(path, os.O_WRONLY)
                os.ftruncate(fd, length)
                os.lseek(fd, length, os.SEEK_SET)
                pending.clear()
                continue
            longest = max(longest, time.monotonic() - started)
        with contextlib.suppress(OSError):
            os.close(fd)
    if results is not None:
        results.put({"path": path, "errors": errors, "longest": longest, "fsyncs": fsyncs})


def read_journal(journal: Path) -> list[tuple[int, str]]:
    """The (length, sha256) of every acknowledged prefix, in order (a torn last line
    is ignored: the writer may have been stopped while writing it)."""
    entries = []
    try:
        text = journal.read_text()
    except FileNotFoundError:
        return []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and len(parts[1]) == 64:
            entries.append((int(parts[0]), parts[1]))
    return entries


def verify(path: Path, acknowledged: list[tuple[int, str]]) -> int:
    """Check every acknowledged prefix of ``path``; the number of bytes verified.

    Raises AssertionError naming the file, the prefix and what was found.
    """
    if not acknowledged:
        return 0
    digest = hashlib.sha256()
    done = 0
    with open(path, "rb") as f:
        for length, expected in acknowledged:
            data = f.read(length - done)
            digest.update(data)
            done += len(data)
            if done < length:
                raise AssertionError(f"{path}: {done} bytes, but an fsync acknowledged "
                                     f"{length}")
            if digest.hexdigest() != expected:
                raise AssertionError(f"{path}: the first {length} bytes, acknowledged by "
                                     f"fsync, read back different")
    return done
