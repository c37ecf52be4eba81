"""Fixtures that start real daemons on real FUSE mounts (and always clean up)."""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.daemon import Daemon

_names = itertools.count()
_HERE = Path(__file__).resolve().parent
# The fixtures that start a server, by the marker a test using them (directly or through
# another fixture) gets.
_SERVERS = {
    "nfs": {"ganesha", "own_ganesha", "nfs_share"},
    "docker": {"docker_engine"},
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test here is ``mount`` (it needs root); those that start nfs-ganesha or
    dockerd are ``nfs`` or ``docker`` too. So ``-m "not mount"`` runs the rest."""
    for item in items:
        if _HERE not in item.path.resolve().parents:
            continue  # a hook of this conftest sees the items of every directory
        item.add_marker(pytest.mark.mount)
        used = set(getattr(item, "fixturenames", ()))
        for marker, fixtures in _SERVERS.items():
            if used & fixtures:
                item.add_marker(getattr(pytest.mark, marker))


@pytest.fixture(scope="session")
def open_tmp() -> Iterator[Path]:
    """A scratch folder every uid can traverse (pytest's own is root-only), so tests
    can act as other users under the mounts placed in it."""
    path = Path(tempfile.mkdtemp(prefix="volfs-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def tmp_path(open_tmp: Path, request: pytest.FixtureRequest) -> Path:
    """Like pytest's tmp_path, but inside ``open_tmp``."""
    path = Path(tempfile.mkdtemp(prefix=request.node.name[:40] + "-", dir=open_tmp))
    path.chmod(0o755)
    return path


@pytest.fixture(scope="session")
def shared_daemon(open_tmp: Path) -> Iterator[Daemon]:
    """One daemon per test worker, for tests that only add and remove their own pods."""
    daemon = Daemon(open_tmp / "shared-daemon").start()
    yield daemon
    daemon.stop()


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    """A daemon of this test's own, for tests that stop, kill or reconfigure it."""
    daemon = Daemon(tmp_path / "volfs").start()
    yield daemon
    daemon.stop()


@pytest.fixture
def pod_name() -> str:
    """A pod name no other test on this worker uses."""
    return f"p{os.getpid()}-{next(_names)}"


# -- NFS: a private nfs-ganesha per worker (tests/integration/nfs.py) --------------------

from tests.integration.nfs import Ganesha, NfsShare, new_share  # noqa: E402


@pytest.fixture(scope="session")
def ganesha(open_tmp: Path) -> Iterator[Ganesha]:
    """This worker's NFS server: loopback, ports of its own; stopped at the end."""
    server = Ganesha(open_tmp / "nfs-export", open_tmp / "nfs-ganesha")
    try:
        server.start()
        (open_tmp / "nfs-export").chmod(0o755)
        yield server
    finally:
        server.stop()


@pytest.fixture
def nfs_share(ganesha: Ganesha, request: pytest.FixtureRequest) -> NfsShare:
    """A directory of this test's own in the worker's export."""
    return new_share(ganesha, request.node.name)


@pytest.fixture
def own_ganesha(tmp_path: Path) -> Iterator[Ganesha]:
    """A server of this test's own, for tests that stop, kill or restart it."""
    server = Ganesha(tmp_path / "nfs-export", tmp_path / "nfs-ganesha")
    try:
        server.start()
        yield server
    finally:
        server.stop()
