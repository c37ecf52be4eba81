"""No byte crosses from one volume into another, whatever the stores' own handle numbers.

One pod holds files open on every kind of volume at once (EmptyDir on disk and in
memory, HostPath, two NFS volumes), then opens, writes and closes files across them
for thousands of rounds, writing a marker to every held file between each open and
its close. Every file must end up holding exactly the markers written to it: a write
routed by a handle number that another store also handed out lands in the wrong file
(or fails), and the final comparison shows it.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.daemon import Daemon, pod_manifest
from tests.integration.nfs import Ganesha, new_share

ROUNDS = 3000
HELD_PER_VOLUME = 2
NAMES_PER_VOLUME = 40  # short-lived files reuse these names, so the table sees reuse too


@pytest.fixture
def mixed(tmp_path: Path, ganesha: Ganesha, pod_name: str
          ) -> Iterator[tuple[Daemon, dict[str, Path], dict[str, Path]]]:
    """A daemon serving one pod with every kind of volume: (daemon, path of each volume
    through the mount, where each volume's bytes really are)."""
    host = tmp_path / "host"
    host.mkdir()
    shares = {name: new_share(ganesha, f"{pod_name}-{name}") for name in ("nfs-a", "nfs-b")}
    volumes = ("    - name: disk\n      emptyDir: {}\n"
               "    - name: memory\n      emptyDir:\n        medium: Memory\n"
               f"    - name: host\n      hostPath:\n        path: {host}\n"
               "        type: Directory\n"
               + "".join(share.volume(name) for name, share in shares.items()))
    daemon = Daemon(tmp_path / "volfs", extra_args=["--allow-host-path", str(host)]).start()
    try:
        daemon.apply(pod_manifest(pod_name, volumes))
        paths = {name: daemon.volume_path(pod_name, name)
                 for name in ("disk", "memory", "host", "nfs-a", "nfs-b")}
        backing = {"host": host, **{name: share.dir for name, share in shares.items()}}
        yield daemon, paths, backing
        daemon.cli("delete", "pod", pod_name)
    finally:
        daemon.stop()


def _write(fd: int, path: Path, expected: dict[Path, bytearray], marker: bytes) -> None:
    """Append ``marker`` at the end the file is expected to have (pwrite: no shared offset)."""
    data = expected[path]
    assert os.pwrite(fd, marker, len(data)) == len(marker), path
    data += marker


@pytest.mark.timeout(300)
def test_interleaved_files_on_every_kind_of_volume_keep_their_own_bytes(
        mixed: tuple[Daemon, dict[str, Path], dict[str, Path]]) -> None:
    daemon, paths, backing = mixed
    rng = random.Random(20261130)
    expected: dict[Path, bytearray] = {}
    held: dict[Path, int] = {}
    for root in paths.values():
        for index in range(HELD_PER_VOLUME):
            path = root / f"held-{index}"
            held[path] = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            expected[path] = bytearray()
    volumes = list(paths)
    try:
        for round_ in range(ROUNDS):
            volume = rng.choice(volumes)
            path = paths[volume] / f"short-{rng.randrange(NAMES_PER_VOLUME)}"
            expected.setdefault(path, bytearray())
            fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
            try:
                _write(fd, path, expected, b"<%s %d>" % (path.name.encode(), round_))
                # While it is open, every held file gets its own marker.
                for held_path, held_fd in held.items():
                    _write(held_fd, held_path, expected,
                           b"[%s/%s %d]" % (held_path.parent.name.encode(),
                                            held_path.name.encode(), round_))
            finally:
                os.close(fd)
            if round_ % 97 == 0:  # reopen a held file: its handle number changes
                moved = rng.choice(list(held))
                os.close(held.pop(moved))
                held[moved] = os.open(moved, os.O_RDWR)
    finally:
        for fd in held.values():
            os.close(fd)

    wrong = [str(path) for path, data in expected.items() if path.read_bytes() != data]
    assert not wrong, f"{len(wrong)} files do not hold what was written to them: {wrong[:5]}"
    # What the NFS server and the host directory store is what was written, too.
    for volume, directory in backing.items():
        for path, data in expected.items():
            if path.parent == paths[volume]:
                assert (directory / path.name).read_bytes() == data, (volume, path.name)
    assert "Traceback" not in daemon.log()
