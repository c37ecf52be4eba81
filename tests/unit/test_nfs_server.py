"""``scripts/nfs-server`` (``python -m volfs.ganesha``) before it starts anything."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from volfs.ganesha import LOOPBACK, Ganesha, free_port, main


@pytest.fixture(autouse=True)
def never_started(monkeypatch: pytest.MonkeyPatch) -> None:
    """A check that let a taken port through fails the test, instead of serving."""
    def start(self: Ganesha, timeout: float = 0) -> Ganesha:
        raise AssertionError("ganesha was started")
    monkeypatch.setattr(Ganesha, "start", start)


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port on loopback that another process (this test) listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as other:
        other.bind((LOOPBACK, 0))
        other.listen(1)
        yield int(other.getsockname()[1])


def test_a_port_in_use_is_one_line_saying_how_to_choose_others(
        taken_port: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    free = free_port()
    assert main(["--port", str(taken_port), "--mount-port", str(free), str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (f"nfs-server: NFS port {taken_port} is in use on {LOOPBACK} (another NFS "
                   "server?); choose others with --port N --mount-port M, e.g. --port 20490 "
                   "--mount-port 20491\n")


def test_a_mount_port_in_use_is_named_too(taken_port: int, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--port", str(free_port()), "--mount-port", str(taken_port),
                 str(tmp_path)]) == 1
    assert f"MOUNT port {taken_port} is in use" in capsys.readouterr().err


def test_one_port_for_both_is_refused(tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    assert main(["--port", str(port), "--mount-port", str(port), str(tmp_path)]) == 1
    assert f"the NFS and MOUNT ports are both {port}" in capsys.readouterr().err
