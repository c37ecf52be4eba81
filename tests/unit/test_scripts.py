"""The scripts a newcomer runs first, as far as they go without installing anything."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_scripts_test_help_says_what_the_suite_needs_and_runs_nothing(
        tmp_path: Path, flag: str) -> None:
    # A copy of scripts/test beside a setup that only leaves a mark: --help must not reach it.
    (tmp_path / "scripts").mkdir()
    shutil.copy(REPO / "scripts" / "test", tmp_path / "scripts" / "test")
    setup = tmp_path / "scripts" / "setup"
    setup.write_text(f"#!/bin/sh\ntouch {tmp_path}/ran\nexit 1\n")
    setup.chmod(0o755)
    result = subprocess.run(["bash", str(tmp_path / "scripts" / "test"), "-m", "x", flag],
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert not (tmp_path / "ran").exists()
    for needed in ("root", "FUSE", "nfs-ganesha", "dockerd", "scripts/setup",
                   "about 5", "2 cores", 'scripts/test -m "not mount"'):
        assert needed in result.stdout, needed


def test_bench_local_refuses_an_unknown_row_in_one_line() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bench"), "local", "--only", "create,nope"],
        capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 2
    assert "unknown: nope" in result.stderr
    assert "Traceback" not in result.stderr


def test_bench_list_shows_local() -> None:
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "bench"), "list"],
                            capture_output=True, text=True, timeout=30, check=True)
    assert any(line.startswith("local") for line in result.stdout.splitlines())
