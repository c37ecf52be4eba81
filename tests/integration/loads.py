"""Workloads that stress tests run in processes of their own, each on one directory.

Each load runs for ``seconds``, then puts one result on ``results``: a dict with
its ``name``, ``ops`` done, the ``errors`` it met by errno name, and ``wrong``: the
first byte mismatch it found (None if every byte read back as written). A load
never raises; anything unexpected is reported as ``wrong``.
"""

from __future__ import annotations

import errno
import os
import random
import time
import traceback
from collections.abc import Callable
from typing import Any

Results = Any  # a multiprocessing.Queue of result dicts

# What a metadata load may meet on any filesystem; anything else (EIO above all) is
# a failure of the volume.
EXPECTED_ERRNOS = {errno.ENOENT, errno.EEXIST, errno.ENAMETOOLONG, errno.ENOTEMPTY,
                   errno.EISDIR, errno.ENOTDIR}


def _run(name: str, results: Results, body: Callable[[dict[str, Any]], None]) -> None:
    outcome: dict[str, Any] = {"name": name, "ops": 0, "errors": {}, "wrong": None}
    try:
        body(outcome)
    except Exception:  # noqa: BLE001 - reported, not raised: the parent checks
        outcome["wrong"] = traceback.format_exc(limit=3)
    results.put(outcome)


def _count(outcome: dict[str, Any], exc: OSError) -> None:
    name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
    outcome["errors"][name] = outcome["errors"].get(name, 0) + 1


def metadata_load(root: str, seed: int, seconds: float, results: Results) -> None:
    """Creates, small writes, renames, links, truncates, symlinks (some too long for
    NFS), mkdirs (some names too long), unlinks and stats on a few names."""

    def body(outcome: dict[str, Any]) -> None:
        rng = random.Random(seed)
        mine = os.path.join(root, f"meta-{seed}")
        os.mkdir(mine)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            a = os.path.join(mine, f"f{rng.randrange(40)}")
            b = os.path.join(mine, f"f{rng.randrange(40)}")
            op = rng.randrange(9)
            try:
                if op == 0:
                    with open(a, "wb") as f:
                        f.write(b"x" * rng.randrange(4096))
                elif op == 1:
                    os.rename(a, b)
                elif op == 2:
                    os.link(a, b)
                elif op == 3:
                    os.truncate(a, rng.randrange(8192))
                elif op == 4:
                    os.unlink(a)
                elif op == 5:
                    os.symlink("s" * rng.choice((10, 1000, 4000, 4095)), a)
                elif op == 6:
                    os.mkdir(a + "-" + "n" * rng.choice((10, 300)))
                elif op == 7:
                    for name in os.listdir(mine):
                        if name.endswith("-" + "n" * 10):
                            os.rmdir(os.path.join(mine, name))
                else:
                    os.stat(a)
            except OSError as exc:
                _count(outcome, exc)
            outcome["ops"] += 1

    _run(f"metadata {os.path.basename(root)} #{seed}", results, body)


def data_load(root: str, seed: int, seconds: float, results: Results) -> None:
    """Writes at random offsets, truncates, renames and unlinks a few files, with a
    model of what each holds; reads every file back against the model, now and then
    and at the end. Some closes are preceded by an fsync."""

    def body(outcome: dict[str, Any]) -> None:
        rng = random.Random(seed)
        mine = os.path.join(root, f"data-{seed}")
        os.mkdir(mine)
        model: dict[str, bytearray] = {}
        end = time.monotonic() + seconds

        def check(name: str) -> None:
            with open(os.path.join(mine, name), "rb") as f:
                got = f.read()
            if got != model[name]:
                at = next((i for i, (x, y) in enumerate(zip(got, model[name], strict=False))
                           if x != y), min(len(got), len(model[name])))
                raise AssertionError(f"{mine}/{name}: {len(got)} bytes, {len(model[name])} "
                                     f"expected, first difference at {at}")

        while time.monotonic() < end:
            name = f"f{rng.randrange(6)}"
            path = os.path.join(mine, name)
            op = rng.randrange(10)
            if op < 5:
                data = model.setdefault(name, bytearray())
                offset = rng.randrange(0, 192 * 1024)
                chunk = rng.randbytes(rng.choice((1, 100, 4096, 65536, 131072)))
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
                try:
                    os.pwrite(fd, chunk, offset)
                    if rng.randrange(4) == 0:
                        os.fsync(fd)
                finally:
                    os.close(fd)
                if len(data) < offset:
                    data.extend(bytes(offset - len(data)))
                data[offset:offset + len(chunk)] = chunk
            elif op < 7 and name in model:
                check(name)
            elif op == 7 and name in model:
                size = rng.randrange(0, 256 * 1024)
                os.truncate(path, size)
                data = model[name]
                del data[size:]
                data.extend(bytes(size - len(data)))
            elif op == 8 and name in model:
                other = f"f{rng.randrange(6)}"
                os.rename(path, os.path.join(mine, other))
                model[other] = model.pop(name)
            elif op == 9 and name in model:
                os.unlink(path)
                del model[name]
            outcome["ops"] += 1
        for name in model:
            check(name)
        if sorted(os.listdir(mine)) != sorted(model):
            raise AssertionError(f"{mine}: {sorted(os.listdir(mine))} != {sorted(model)}")

    _run(f"data {os.path.basename(root)} #{seed}", results, body)


def handle_load(roots: list[str], seed: int, seconds: float, results: Results) -> None:
    """Files held open on every volume at once, while short-lived files are opened,
    written and closed across them: every marker must land in its own file."""

    def body(outcome: dict[str, Any]) -> None:
        rng = random.Random(seed)
        expected: dict[str, bytearray] = {}
        held: dict[str, int] = {}
        for root in roots:
            mine = os.path.join(root, f"handles-{seed}")
            os.mkdir(mine)
            path = os.path.join(mine, "held")
            held[path] = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            expected[path] = bytearray()

        def write(fd: int, path: str, marker: bytes) -> None:
            data = expected[path]
            os.pwrite(fd, marker, len(data))
            data += marker

        end = time.monotonic() + seconds
        try:
            while time.monotonic() < end:
                root = rng.choice(roots)
                path = os.path.join(root, f"handles-{seed}", f"short{rng.randrange(20)}")
                expected.setdefault(path, bytearray())
                fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
                try:
                    write(fd, path, b"<%d>" % outcome["ops"])
                    for held_path, held_fd in held.items():
                        write(held_fd, held_path, b"[%d]" % outcome["ops"])
                finally:
                    os.close(fd)
                outcome["ops"] += 1
        finally:
            for fd in held.values():
                os.close(fd)
        for path, data in expected.items():
            with open(path, "rb") as f:
                if f.read() != data:
                    raise AssertionError(f"{path} does not hold what was written to it")

    _run(f"handles #{seed}", results, body)
