"""A full source filesystem: ENOSPC to the writer, the daemon keeps serving, and the
state database is never corrupted.

The state dir (which holds the state database and every EmptyDir on disk) and a
HostPath are put on small tmpfs mounts of their own, filled through a pod's volume.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.daemon import Daemon, pod_manifest

SCRATCH = "    - name: scratch\n      emptyDir: {}\n"
CHUNK = 256 * 1024


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs",
                    str(path)], check=True, capture_output=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


def fill(path: Path) -> tuple[int, int]:
    """Write ``path`` until the filesystem is full: (bytes written, the errno met)."""
    written = 0
    try:
        with open(path, "wb") as f:
            while written < 1 << 30:
                written += f.write(os.urandom(CHUNK))
                f.flush()
    except OSError as exc:
        return written, exc.errno or 0
    return written, 0


def integrity(state_db: Path) -> str:
    conn = sqlite3.connect(state_db)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


def pod_exists(daemon: Daemon, name: str) -> bool:
    return daemon.api("GET", f"/api/v1/namespaces/default/pods/{name}").status_code == 200


def pod_uids(daemon: Daemon) -> set[str]:
    pods = daemon.api("GET", "/api/v1/pods").json()["items"]
    return {pod["metadata"]["uid"] for pod in pods}


def pod_dirs(daemon: Daemon) -> set[str]:
    """The pods that have EmptyDirs on disk."""
    return set(os.listdir(daemon.state_dir / "pods"))


@pytest.fixture
def full_daemon(tmp_path: Path) -> Iterator[Daemon]:
    """A daemon whose state dir is an 8 MiB tmpfs."""
    daemon = Daemon(tmp_path / "volfs")
    with small_tmpfs(daemon.state_dir, "8m"):
        try:
            yield daemon.start()
        finally:
            daemon.stop()


def test_a_full_state_filesystem_gives_enospc_and_keeps_the_daemon_and_its_database(
        full_daemon: Daemon, pod_name: str) -> None:
    daemon = full_daemon
    daemon.apply(pod_manifest(pod_name, SCRATCH))
    scratch = daemon.volume_path(pod_name, "scratch")
    (scratch / "kept").write_bytes(b"k" * 1000)
    written, code = fill(scratch / "filler")
    assert code == errno.ENOSPC, (written, os.strerror(code))

    # Full: the daemon still answers, and a new pod is created or cleanly refused.
    assert pod_name in daemon.cli("get", "pods").stdout
    second = daemon.cli("apply", "-f", "-", input=pod_manifest(pod_name + "-b", SCRATCH),
                        check=False)
    if second.returncode != 0:
        assert second.stderr.strip().splitlines() == [
            f'error: <stdin>: pod "{pod_name}-b": no space left on the filesystem of the '
            f"state database {daemon.state_dir / 'state.db'}: nothing was changed (free "
            "some space there)"], second.stderr
        assert not pod_exists(daemon, pod_name + "-b")  # nothing half-created
    else:
        assert pod_exists(daemon, pod_name + "-b")
    assert pod_dirs(daemon) == pod_uids(daemon)
    made = {pod_name} | ({pod_name + "-b"} if second.returncode == 0 else set())

    # Room again: writes and creates work.
    (scratch / "filler").unlink()
    (scratch / "after").write_bytes(b"a" * CHUNK)
    daemon.apply(pod_manifest(pod_name + "-c", SCRATCH))
    made.add(pod_name + "-c")

    daemon.kill9()
    assert integrity(daemon.state_dir / "state.db") == "ok"
    daemon.start()
    assert all(pod_exists(daemon, name) for name in made)
    assert pod_dirs(daemon) == pod_uids(daemon)
    assert (scratch / "kept").read_bytes() == b"k" * 1000
    assert (scratch / "after").read_bytes() == b"a" * CHUNK
    assert "Traceback" not in daemon.log(), daemon.log()


def test_a_full_host_path_gives_enospc_to_the_writer_and_the_daemon_serves_on(
        tmp_path: Path, pod_name: str) -> None:
    with small_tmpfs(tmp_path / "host", "4m") as host:
        daemon = Daemon(tmp_path / "volfs", extra_args=["--allow-host-path", str(host)])
        try:
            daemon.start()
            daemon.apply(pod_manifest(pod_name, SCRATCH + f"    - name: host\n      hostPath:"
                                                          f"\n        path: {host}\n"))
            path = daemon.volume_path(pod_name, "host")
            written, code = fill(path / "filler")
            assert code == errno.ENOSPC, (written, os.strerror(code))
            assert written <= 4 << 20
            assert pod_name in daemon.cli("get", "pods").stdout
            (daemon.volume_path(pod_name, "scratch") / "f").write_text("elsewhere fine")
            (path / "filler").unlink()
            (path / "after").write_bytes(b"a" * CHUNK)
            assert (host / "after").read_bytes() == b"a" * CHUNK
            assert "Traceback" not in daemon.log(), daemon.log()
        finally:
            daemon.stop()
