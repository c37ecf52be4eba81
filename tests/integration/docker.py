"""A real Docker engine for the tests, and an image built offline from busybox-static.

One ``dockerd`` serves the whole test session: every xdist worker (and a run without
xdist) takes a reference to it under a file lock; the first starts it, the last one
out stops it and removes its folder. A worker that dies without letting go is noticed
by pid, and an engine whose users are all gone (a run that crashed) is stopped by the
next run. The engine has no network (``--bridge=none``, no iptables) and its own
data root, exec root, pid file and socket under ``/tmp/volfs-dockerd/<run>/``.

There is no image registry: ``IMAGE`` is made by ``docker import`` of a root
filesystem holding ``/bin/busybox`` and its applet links. Its default command keeps
running until SIGTERM, which ends it at once.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import itertools
import json
import os
import shutil
import signal
import subprocess
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.daemon import Daemon

IMAGE = "volfs-test:latest"
IMAGE_CMD = ["sh", "-c", "trap 'exit 0' TERM; sleep 86400 & wait"]
BUSYBOX = Path("/bin/busybox")
BASE = Path("/tmp/volfs-dockerd")
PLUGIN_DIR = Path("/run/docker/plugins")
PLUGIN_PREFIX = "volfs-test-"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
ABANDONED_AFTER = 120.0  # seconds: an older engine folder with no live user is stale

_plugin_names = itertools.count()


@dataclass(frozen=True)
class Engine:
    """One running dockerd, driven through the docker CLI."""

    dir: Path

    @property
    def socket(self) -> Path:
        return self.dir / "docker.sock"

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    @property
    def pidfile(self) -> Path:
        return self.dir / "dockerd.pid"

    def docker(self, *args: str, input: bytes | str | None = None, check: bool = True,
               timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """``docker -H <this engine> ARGS``; text output."""
        data = input.decode() if isinstance(input, bytes) else input
        result = subprocess.run(
            ["docker", "-H", self.host, *args], input=data, capture_output=True, text=True,
            timeout=timeout, check=False,
            env=dict(os.environ, DOCKER_CONFIG=str(self.dir / "cli")))
        if check and result.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} exited {result.returncode}:\n"
                                 f"{result.stderr}")
        return result

    def containers(self, *filters: str) -> list[str]:
        """Names of the containers (running or not) matching ``label=...`` filters."""
        args = [a for f in filters for a in ("--filter", f)]
        out = self.docker("ps", "-a", "--format", "{{.Names}}", *args).stdout
        return out.split()

    def inspect(self, name: str) -> dict:  # type: ignore[type-arg]
        return json.loads(self.docker("inspect", name).stdout)[0]  # type: ignore[no-any-return]

    def answers(self) -> bool:
        if not self.socket.exists():
            return False
        return self.docker("version", "--format", "{{.Server.Version}}", check=False,
                           timeout=10).returncode == 0


def plugin_name() -> str:
    """A Docker volume-plugin name no other test (or worker) uses."""
    return f"{PLUGIN_PREFIX}{os.getpid()}-{next(_plugin_names)}"


def volfs_for(engine: Engine, base: Path, *extra: str, plugin: str | None = None) -> Daemon:
    """A (not yet started) volfs daemon that runs containers on ``engine``."""
    args = ["--docker-host", engine.host]
    if plugin:
        args += ["--docker-plugin", plugin]
    return Daemon(base, extra_args=[*args, *extra])


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[Engine]:
    """The session's Docker engine, with ``IMAGE`` in it."""
    with shared_engine() as engine:
        yield engine


# -- one engine for all workers ----------------------------------------------------------

@contextlib.contextmanager
def shared_engine() -> Iterator[Engine]:
    BASE.mkdir(mode=0o700, exist_ok=True)
    _stop_abandoned()
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID", "")[:12] or f"pid{os.getpid()}"
    engine = Engine(BASE / run)
    with _locked(engine.dir):
        users = _users(engine) | {os.getpid()}
        _write_users(engine, users)
        if not engine.answers():
            try:
                _start(engine)
                _build_image(engine)
            except BaseException:
                _write_users(engine, users - {os.getpid()})
                _stop(engine)
                raise
    try:
        yield engine
    finally:
        with _locked(engine.dir):
            users = _users(engine) - {os.getpid()}
            _write_users(engine, users)
            if not users:
                _stop(engine)
                shutil.rmtree(engine.dir, ignore_errors=True)  # lock file included


@contextlib.contextmanager
def _locked(folder: Path, blocking: bool = True) -> Iterator[None]:
    """Hold ``folder/lock``, making the folder if needed. A holder may remove the folder,
    lock file and all: whoever waited on the removed file then starts over."""
    while True:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(folder / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            current = os.stat(folder / "lock").st_ino
        except FileNotFoundError:
            current = None
        except BaseException:
            os.close(fd)
            raise
        if current == os.fstat(fd).st_ino:
            break
        os.close(fd)
    try:
        yield
    finally:
        os.close(fd)


def _users(engine: Engine) -> set[int]:
    """The pids holding a reference that are still alive."""
    try:
        pids = {int(p) for p in (engine.dir / "users").read_text().split()}
    except FileNotFoundError:
        return set()
    return {pid for pid in pids if _alive(pid)}


def _write_users(engine: Engine, users: set[int]) -> None:
    (engine.dir / "users").write_text("".join(f"{pid}\n" for pid in sorted(users)))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM
    return True


def _stop_abandoned() -> None:
    """Stop engines of earlier runs whose every user is gone, and remove plugin sockets
    that test daemons which died left in the machine-wide plugin directory (Docker
    would wait 30 s on each, for every unfiltered ``docker volume ls``)."""
    for stale in PLUGIN_DIR.glob(f"{PLUGIN_PREFIX}*.sock"):
        pid = stale.name.removeprefix(PLUGIN_PREFIX).split("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            stale.unlink(missing_ok=True)
    for folder in BASE.iterdir():
        # a young folder may be a run that has not written its users yet
        if not folder.is_dir() or time.time() - folder.stat().st_mtime < ABANDONED_AFTER:
            continue
        try:
            with _locked(folder, blocking=False):
                engine = Engine(folder)
                if not _users(engine):
                    _stop(engine)
                    shutil.rmtree(folder, ignore_errors=True)
        except BlockingIOError:
            continue  # in use right now


def _start(engine: Engine) -> None:
    _stop(engine)  # a leftover from a worker that died mid-start
    config = engine.dir / "daemon.json"
    config.write_text("{}\n")
    with open(engine.dir / "dockerd.log", "ab") as log:
        proc = subprocess.Popen(
            ["dockerd", "--config-file", str(config),
             "--data-root", str(engine.dir / "data"), "--exec-root", str(engine.dir / "exec"),
             "--pidfile", str(engine.pidfile), "-H", engine.host,
             "--iptables=false", "--ip6tables=false", "--ip-forward=false",
             "--ip-masq=false", "--bridge=none", "--userland-proxy=false"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)  # outlives the worker that started it, if others use it
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"dockerd exited with {proc.returncode}:\n{_log_tail(engine)}")
        if engine.answers():
            return
        time.sleep(0.2)
    raise RuntimeError(f"dockerd did not answer in {START_TIMEOUT}s:\n{_log_tail(engine)}")


def _stop(engine: Engine) -> None:
    try:
        pid = int(engine.pidfile.read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return
    if not _alive(pid) or "dockerd" not in _cmdline(pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while _alive(pid) and time.monotonic() < deadline:
        _reap(pid)
        time.sleep(0.1)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
        _reap(pid)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _log_tail(engine: Engine) -> str:
    with contextlib.suppress(OSError):
        return (engine.dir / "dockerd.log").read_text(errors="replace")[-3000:]
    return ""


def _build_image(engine: Engine) -> None:
    """``IMAGE``: /bin/busybox, a link per applet, /tmp, and users root and 1000."""
    applets = subprocess.run([str(BUSYBOX), "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, mode in (("bin", 0o755), ("etc", 0o755), ("tmp", 0o1777), ("root", 0o700)):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, mode
            tar.addfile(info)
        tar.add(str(BUSYBOX), "bin/busybox")
        for applet in applets:
            if applet != "busybox":
                link = tarfile.TarInfo(f"bin/{applet}")
                link.type, link.linkname, link.mode = tarfile.SYMTYPE, "busybox", 0o777
                tar.addfile(link)
        for name, text in (("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"
                                          "user:x:1000:1000:user:/tmp:/bin/sh\n"),
                           ("etc/group", "root:x:0:\nuser:x:1000:\n")):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    subprocess.run(
        ["docker", "-H", engine.host, "import", "-c", f"CMD {json.dumps(IMAGE_CMD)}", "-",
         IMAGE], input=buffer.getvalue(), capture_output=True, check=True, timeout=120,
        env=dict(os.environ, DOCKER_CONFIG=str(engine.dir / "cli")))
