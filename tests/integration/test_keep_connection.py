"""``--keep-connection``: a daemon killed with SIGKILL and started again is a pause, not an
outage. A process that holds a file open on an EmptyDir across the kill keeps using it,
a call made while no daemon serves waits and then succeeds, and fsync'ed bytes are there.
A clean stop ends the kept connection; a daemon started without the flag lets a kept
connection go and mounts anew."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.daemon import Daemon
from volfs.fs import keeper

POD = """\
apiVersion: v1
kind: Pod
metadata: {name: writer}
spec:
  containers: [{name: c, image: busybox}]
  volumes: [{name: scratch, emptyDir: {}}]
"""

# Holds one file open across the restart: writes and fsyncs a line, says "ready", waits
# for a line on stdin, then writes and fsyncs another through the same descriptor and
# prints the file as a fresh open by path reads it.
HOLDER = textwrap.dedent("""\
    import os, sys
    path = sys.argv[1]
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
    os.write(fd, b"before\\n"); os.fsync(fd)
    print("ready", flush=True)
    sys.stdin.readline()
    os.write(fd, b"after\\n"); os.fsync(fd)
    with open(path, "rb") as f:
        sys.stdout.write(f.read().decode())
    """)


@pytest.fixture
def kept(tmp_path: Path) -> Iterator[Daemon]:
    daemon = Daemon(tmp_path / "volfs", extra_args=["--keep-connection",
                                                    "--recover-containers", "none"]).start()
    yield daemon
    daemon.stop()
    keeper.drop(keeper.socket_path(daemon.state_dir))  # never leave a connection kept


@pytest.mark.timeout(90)
def test_a_process_holding_a_file_sees_no_error_across_kill_9(kept: Daemon) -> None:
    kept.apply(POD)
    directory = kept.volume_path("writer", "scratch")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(directory / "log")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline() == "ready\n"
        kept.kill9()
        # Asked while no daemon serves: it waits (instead of ENOTCONN) for the next one.
        reader = subprocess.Popen(["cat", str(directory / "log")], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        kept.start()
        read_out, read_err = reader.communicate(timeout=30)
        holder.stdin.write("go\n")
        holder.stdin.flush()
        out, _ = holder.communicate(timeout=30)
    finally:
        holder.kill()
    assert (reader.returncode, read_err, read_out) == (0, "", "before\n")
    assert (holder.returncode, out) == (0, "before\nafter\n")
    assert "serving the kept FUSE connection" in kept.log()


@pytest.mark.timeout(60)
def test_a_clean_stop_ends_the_kept_connection(kept: Daemon) -> None:
    assert keeper.get(keeper.socket_path(kept.state_dir)) is not None
    kept.stop()
    assert keeper.get(keeper.socket_path(kept.state_dir)) is None
    assert not os.path.ismount(kept.root)


@pytest.mark.timeout(90)
def test_without_the_flag_a_kept_connection_is_let_go_and_mounted_anew(
        kept: Daemon) -> None:
    kept.apply(POD)
    path = kept.volume_path("writer", "scratch") / "kept"
    path.write_text("survives")
    kept.kill9()
    plain = Daemon(kept.base, extra_args=["--recover-containers", "none"])
    plain.start()  # waits for the keeper's grace at most, then mounts anew
    try:
        assert keeper.get(keeper.socket_path(kept.state_dir)) is None
        assert path.read_text() == "survives"
        assert "serving the kept FUSE connection" not in plain.log()
    finally:
        plain.stop()


# Appends each line it is given to a file it holds open, fsyncs, and answers "ok".
APPENDER = textwrap.dedent("""\
    import os, sys
    fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
    for line in sys.stdin:
        os.write(fd, line.encode()); os.fsync(fd)
        print("ok", flush=True)
    """)


@pytest.mark.timeout(90)
def test_one_connection_outlives_several_daemons(kept: Daemon) -> None:
    kept.apply(POD)
    directory = kept.volume_path("writer", "scratch")
    (directory / "sub").mkdir()
    (directory / "sub" / "g").write_text("g")
    appender = subprocess.Popen([sys.executable, "-c", APPENDER, str(directory / "log")],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert appender.stdin is not None and appender.stdout is not None
        for round in range(3):
            appender.stdin.write(f"r{round}\n")
            appender.stdin.flush()
            assert appender.stdout.readline() == "ok\n"
            kept.kill9()
            kept.start()
        (directory / "sub" / "g").rename(directory / "h")  # nodes known before the kills
        appender.stdin.write("last\n")
        appender.stdin.flush()
        assert appender.stdout.readline() == "ok\n"
    finally:
        appender.kill()
    assert (directory / "log").read_text().split() == ["r0", "r1", "r2", "last"]
    assert sorted(os.listdir(directory)) == ["h", "log", "sub"]
    assert kept.log().count("serving the kept FUSE connection") == 3
