"""What installs volfs on a machine: the systemd unit (as scripts/run renders it) and
the Vagrantfile, checked by systemd's and Vagrant's own tools, offline."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "deploy" / "systemd" / "volfs.service"
VOLFS = Path(sys.executable).with_name("volfs")  # the volfs these tests run


def _tool(name: str) -> str:
    """The path of a tool the checks need; a failure, not a skip, when it is missing."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: run sudo scripts/setup (it installs the "
                    f"Debian package that has it)")
    return path


def _checkout_copy(tmp_path: Path) -> Path:
    """scripts/run and the unit in a checkout of their own, whose .venv/bin/volfs is
    this test's volfs, and whose scripts/setup only leaves a mark if run."""
    (tmp_path / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "run", tmp_path / "scripts" / "run")
    setup = tmp_path / "scripts" / "setup"
    setup.write_text(f"#!/bin/sh\ntouch {tmp_path}/setup-ran\nexit 1\n")
    setup.chmod(0o755)
    (tmp_path / "deploy" / "systemd").mkdir(parents=True)
    shutil.copy(UNIT, tmp_path / "deploy" / "systemd")
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "volfs").symlink_to(VOLFS)
    return tmp_path


def _run(checkout: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(checkout / "scripts" / "run"), *args],
                          capture_output=True, text=True, timeout=30, check=False)


@pytest.mark.timeout(30)
def test_the_rendered_unit_starts_this_checkouts_volfs_and_is_otherwise_as_shipped(
        tmp_path: Path) -> None:
    checkout = _checkout_copy(tmp_path)
    result = _run(checkout, "--print-service")
    assert result.returncode == 0, result.stderr
    shipped = UNIT.read_text().splitlines()
    rendered = result.stdout.splitlines()
    assert [line for line in rendered if line.startswith("ExecStart=")] == [
        f"ExecStart={checkout}/.venv/bin/volfs serve"]
    assert [line for line in rendered if not line.startswith("ExecStart=")] == [
        line for line in shipped if not line.startswith("ExecStart=")]
    assert not (checkout / "setup-ran").exists()


@pytest.mark.timeout(60)
def test_systemd_analyze_verify_finds_nothing_to_say_about_the_installed_unit(
        tmp_path: Path) -> None:
    analyze = _tool("systemd-analyze")
    checkout = _checkout_copy(tmp_path / "checkout")
    rendered = _run(checkout, "--print-service")
    assert rendered.returncode == 0, rendered.stderr
    unit = tmp_path / "volfs.service"  # verify takes the unit's name from the file's
    unit.write_text(rendered.stdout)
    # verify exits 0 on unknown keys and bad values, and only warns: silence is the pass.
    result = subprocess.run([analyze, "verify", "--man=no", str(unit)], capture_output=True,
                            text=True, timeout=50, check=False)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


@pytest.mark.timeout(30)
def test_install_service_without_systemd_is_refused_in_one_line(tmp_path: Path) -> None:
    if Path("/run/systemd/system").is_dir():
        pytest.skip("systemd runs this machine: the refusal is for machines without it")
    checkout = _checkout_copy(tmp_path)
    result = _run(checkout, "--install-service")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("run: --install-service needs systemd running as PID 1")
    assert result.stderr.count("\n") == 1
    assert not (checkout / "setup-ran").exists()


def test_install_service_takes_no_serve_flags(tmp_path: Path) -> None:
    result = _run(_checkout_copy(tmp_path), "--install-service", "--root", "/mnt/v")
    assert result.returncode == 1
    assert result.stderr == ("run: --install-service takes no other arguments: serve's "
                             "settings go in /etc/volfs/config.yaml\n")


@pytest.mark.timeout(90)
def test_vagrant_validates_the_vagrantfile_without_a_box_or_a_provider(tmp_path: Path) -> None:
    vagrant = _tool("vagrant")
    shutil.copy(REPO / "Vagrantfile", tmp_path / "Vagrantfile")
    env = dict(os.environ, VAGRANT_HOME=str(tmp_path / "vagrant.d"),
               VAGRANT_CHECKPOINT_DISABLE="1")  # no version check over the network
    result = subprocess.run([vagrant, "validate", "--ignore-provider"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=80, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Vagrantfile validated successfully." in result.stdout
