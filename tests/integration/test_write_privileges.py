"""What a write removes, now that volfs takes it on (FUSE_HANDLE_KILLPRIV_V2,
volfs/fs/negotiate.py): the kernel asks for a file's security.capability once, not
before every write; a write still removes a capability and a set-user-ID bit as a
native filesystem does (set-ID bits by other users: tests/integration/test_posix.py)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.daemon import Daemon, pod_manifest
from tests.integration.test_metrics import scrape, value

# A version 2 security.capability value granting cap_net_raw (permitted and effective).
CAPABILITY = (0x02000001).to_bytes(4, "little") + (1 << 13).to_bytes(4, "little") + bytes(12)


@pytest.fixture(scope="module")
def counted(open_tmp: Path) -> Iterator[Daemon]:
    daemon = Daemon(open_tmp / "privileges-daemon",
                    extra_args=["--metrics", "127.0.0.1:0"]).start()
    yield daemon
    daemon.stop()


def _getxattrs(daemon: Daemon) -> float:
    return value(scrape(daemon), "volfs_fuse_requests_total", operation="getxattr")


@pytest.mark.timeout(60)
def test_a_stream_of_writes_asks_for_the_capability_once(counted: Daemon,
                                                        pod_name: str) -> None:
    counted.apply(pod_manifest(pod_name, "    - name: scratch\n      emptyDir: {}\n"))
    path = counted.volume_path(pod_name, "scratch") / "f"
    before = _getxattrs(counted)
    with open(path, "wb", buffering=0) as f:
        for _ in range(200):
            f.write(b"x" * 4096)
    asked = _getxattrs(counted) - before
    assert asked <= 2, f"{asked:.0f} getxattr requests for 200 writes"
    assert path.stat().st_size == 200 * 4096
    counted.cli("delete", "pod", pod_name)


def _write_as_user(path: Path) -> None:
    """Append to ``path`` as uid 1000, from its directory (root gets it there: the
    tree above a volume is root's alone)."""
    code = f"open({path.name!r}, 'ab').write(b'more')"
    done = subprocess.run(["setpriv", "--reuid=1000", "--regid=1000", "--clear-groups",
                           sys.executable, "-c", code], cwd=path.parent, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr


@pytest.mark.timeout(60)
@pytest.mark.parametrize("where", ["native", "volfs"])
def test_a_write_removes_a_capability_and_set_user_id(counted: Daemon, tmp_path: Path,
                                                      pod_name: str, where: str) -> None:
    if where == "volfs":
        counted.apply(pod_manifest(pod_name, "    - name: scratch\n      emptyDir: {}\n"))
        directory = counted.volume_path(pod_name, "scratch")
    else:
        directory = tmp_path
    path = directory / "tool"
    path.write_bytes(b"#!/bin/sh\n")
    path.chmod(0o4777)
    os.setxattr(path, "security.capability", CAPABILITY)
    assert os.getxattr(path, "security.capability") == CAPABILITY
    with open(path, "ab") as f:  # by root, who keeps set-user-ID (but not the capability)
        f.write(b"# root\n")
    assert path.stat().st_mode & stat.S_ISUID
    assert "security.capability" not in os.listxattr(path)
    os.setxattr(path, "security.capability", CAPABILITY)
    os.chmod(path, 0o4777)
    _write_as_user(path)
    assert not path.stat().st_mode & stat.S_ISUID
    assert "security.capability" not in os.listxattr(path)
    if where == "volfs":
        counted.cli("delete", "pod", pod_name)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("where", ["native", "volfs"])
def test_a_chown_removes_set_ids_as_native_does(counted: Daemon, tmp_path: Path,
                                                pod_name: str, where: str) -> None:
    """chown, even to the same owner (-1, -1) and by root, removes set-user-ID, and
    set-group-ID with group execute; with KILLPRIV_V2 the kernel leaves that to volfs."""
    if where == "volfs":
        counted.apply(pod_manifest(pod_name, "    - name: scratch\n      emptyDir: {}\n"))
        directory = counted.volume_path(pod_name, "scratch")
    else:
        directory = tmp_path
    seen = []
    for mode, owner in ((0o6755, (-1, -1)), (0o6745, (-1, -1)), (0o4755, (1000, 1000))):
        path = directory / f"tool-{mode:o}-{owner[0]}"
        path.write_bytes(b"#!/bin/sh\n")
        path.chmod(mode)
        os.chown(path, *owner)
        seen.append(stat.S_IMODE(path.stat().st_mode))
    sub = directory / "sub"
    sub.mkdir()
    sub.chmod(0o2775)
    os.chown(sub, -1, -1)  # a directory keeps set-group-ID (its children inherit the group)
    seen.append(stat.S_IMODE(sub.stat().st_mode))
    assert seen == [0o0755, 0o2745, 0o0755, 0o2775]
    if where == "volfs":
        counted.cli("delete", "pod", pod_name)
