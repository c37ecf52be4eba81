"""Fixtures shared by every test layer."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_manifests() -> Path:
    """The manifests users bring (``shared/manifests`` beside the repository)."""
    path = REPO.parent / "shared" / "manifests"
    assert path.is_dir(), f"{path} is missing: the suite expects shared/ beside the repository"
    return path
