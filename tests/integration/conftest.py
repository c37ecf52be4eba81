"""Fixtures that start real daemons on real FUSE mounts (and always clean up)."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.daemon import Daemon

_names = itertools.count()


@pytest.fixture(scope="session")
def shared_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """One daemon per test worker, for tests that only add and remove their own pods."""
    daemon = Daemon(tmp_path_factory.mktemp("shared-daemon")).start()
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
