"""Fixtures for the unit tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def manifest_dir() -> Path:
    """``shared/manifests`` beside the repository: the manifests users bring."""
    path = Path(__file__).resolve().parents[2].parent / "shared" / "manifests"
    assert path.is_dir(), f"{path} is missing: the suite expects shared/ beside the repository"
    return path
