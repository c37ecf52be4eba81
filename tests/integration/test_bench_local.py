"""`scripts/bench local` end to end on its cheapest row: it mounts the floor filesystem and
volfs, runs the create/unlink loop through both, writes its JSON, and leaves nothing
mounted. Its figures are not checked: a benchmark is not a test, only its plumbing is."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _mounts() -> str:
    return Path("/proc/mounts").read_text()


@pytest.mark.slow
@pytest.mark.timeout(90)
@pytest.mark.skipif(shutil.which("cc") is None, reason="the create loop is compiled with cc")
def test_bench_local_quick_create_row_runs_floor_and_volfs_and_unmounts_all(
        tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bench"), "local", "--quick", "--rounds", "1",
         "--only", "create", "--targets", "floor,volfs-emptydir", "--json", str(out)],
        capture_output=True, text=True, timeout=80, check=False)
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert set(report["rows"]) == {"create", "unlink"}
    for row in report["rows"].values():
        for source in ("disk", "tmpfs"):
            targets = row["results"][source]
            assert set(targets) == {"native", "floor", "volfs-emptydir"}
            volfs = targets["volfs-emptydir"]
            assert volfs["median"] > 0
            assert volfs["ratios"]["native"] == pytest.approx(
                volfs["median"] / targets["native"]["median"])
            assert volfs["cpu_us_per_op"], "the daemon's CPU time is counted"
    base = str(Path(report["sources"]["disk"]).parent)
    assert base not in _mounts(), "the run's tmpfs and FUSE mounts are all gone"
    assert not Path(base).exists()
    assert "create: file creates" in result.stdout

