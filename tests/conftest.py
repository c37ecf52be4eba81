"""Fixtures shared by every test layer."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# The suite's daemons and CLI runs read no config file unless a test names one: a
# /etc/volfs/config.yaml on this machine must not change what the tests see.
os.environ["VOLFS_CONFIG"] = ""


@pytest.fixture(scope="session")
def examples_dir() -> Path:
    """The repository's ``examples/``: manifests users apply as they are."""
    return REPO / "examples"


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Tests marked ``root`` are skipped, saying why, when not run as root."""
    if item.get_closest_marker("root") is not None and os.geteuid() != 0:
        pytest.skip("needs root (chown to other users, reopening inodes by file handle)")
