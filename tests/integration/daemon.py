"""A real volfs daemon in a subprocess, and a client that drives it through the CLI."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

VOLFS = str(Path(sys.executable).with_name("volfs"))
START_TIMEOUT = 20.0


class DaemonError(AssertionError):
    pass


@dataclass
class Daemon:
    """One ``volfs serve`` on its own root, state dir and socket."""

    base: Path
    extra_args: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def root(self) -> Path:
        return self.base / "root"

    @property
    def state_dir(self) -> Path:
        return self.base / "state"

    @property
    def socket(self) -> Path:
        return self.base / "volfs.sock"

    @property
    def log_path(self) -> Path:
        return self.base / "daemon.log"

    @property
    def env(self) -> dict[str, str]:
        return dict(os.environ, VOLFS_SOCKET=str(self.socket))

    def start(self) -> Daemon:
        self.base.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [VOLFS, "serve", "--root", str(self.root), "--state-dir", str(self.state_dir),
                 "--socket", str(self.socket),
                 "--docker-plugin", "",  # the plugin dir is machine-wide: a test names its own
                 *self.extra_args],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=dict(os.environ, VOLFS_CONFIG=""))  # a test's --config, or none
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise DaemonError(f"volfs serve exited with {self.proc.returncode}:\n"
                                  f"{self.log()}")
            if self._healthy() and os.path.ismount(self.root):
                return self
            time.sleep(0.05)
        self.stop()  # never leave a daemon (and its mount) behind a failed start
        raise DaemonError(f"volfs serve did not become ready:\n{self.log()}")

    @property
    def pid(self) -> int:
        """The running daemon's process id."""
        assert self.proc is not None, "the daemon is not running"
        return self.proc.pid

    def _healthy(self) -> bool:
        if not self.socket.exists():
            return False
        try:
            transport = httpx.HTTPTransport(uds=str(self.socket))
            with httpx.Client(transport=transport, base_url="http://volfs", timeout=2) as c:
                return c.get("/healthz").status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        """Stop the daemon (SIGTERM by default) and make sure nothing stays mounted."""
        code = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                code = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                code = self.proc.wait(5)
        elif self.proc is not None:
            code = self.proc.returncode
        self.proc = None
        subprocess.run(["fusermount3", "-uz", str(self.root)], capture_output=True,
                       check=False)
        return code

    def kill9(self) -> None:
        """Die as a crash does: no unmount, no cleanup (the mount is left stale)."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)
        self.proc = None

    def log(self) -> str:
        with contextlib.suppress(FileNotFoundError):
            return self.log_path.read_text(errors="replace")[-4000:]
        return ""

    # -- the CLI -------------------------------------------------------------------

    def cli(self, *args: str, input: str | None = None, check: bool = True
            ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([VOLFS, *args], input=input, capture_output=True, text=True,
                                env=self.env, timeout=60, check=False)
        if check and result.returncode != 0:
            raise DaemonError(f"volfs {' '.join(args)} exited {result.returncode}:\n"
                              f"{result.stderr}\n--- daemon log ---\n{self.log()}")
        return result

    def api(self, method: str, path: str, body: Any = None) -> httpx.Response:
        """One request to the control API (the Kubernetes-shaped REST paths)."""
        transport = httpx.HTTPTransport(uds=str(self.socket))
        with httpx.Client(transport=transport, base_url="http://volfs", timeout=60) as client:
            return client.request(method, path, json=body)

    def apply(self, manifest: str) -> subprocess.CompletedProcess[str]:
        return self.cli("apply", "-f", "-", input=manifest)

    def pod(self, name: str, namespace: str = "default") -> dict[str, Any]:
        out = self.cli("get", "pod", name, "-n", namespace, "-o", "json").stdout
        return json.loads(out)

    def volume_path(self, pod: str, volume: str, namespace: str = "default") -> Path:
        for info in self.pod(pod, namespace)["status"]["volumes"]:
            if info["name"] == volume:
                return Path(info["path"])
        raise KeyError(volume)


def pod_manifest(name: str, volumes: str, namespace: str = "default") -> str:
    """A v1 Pod whose one container mounts every volume given (YAML list items)."""
    names = [line.split("name:")[1].strip() for line in volumes.splitlines()
             if line.strip().startswith("- name:")]
    mounts = "\n".join(f"        - name: {n}\n          mountPath: /mnt/{n}" for n in names)
    return f"""\
apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: {namespace}
spec:
  containers:
    - name: main
      image: busybox
      volumeMounts:
{mounts}
  volumes:
{volumes}
"""


PASSTHROUGH_KINDS = ["emptyDir", "hostPath"]


@contextlib.contextmanager
def passthrough_volume(kind: str, shared_daemon: Daemon, scratch: Path,
                       name: str) -> Iterator[tuple[Path, Path]]:
    """One volume named ``scratch`` of a pod ``name``, of a kind the local store serves:
    (its path through the mount, where its bytes really are).

    An EmptyDir comes from ``shared_daemon``; a HostPath, over a new directory in
    ``scratch``, from a daemon of its own that allows it (stopped at the end).
    """
    if kind == "emptyDir":
        shared_daemon.apply(pod_manifest(name, "    - name: scratch\n      emptyDir: {}\n"))
        uid = shared_daemon.pod(name)["metadata"]["uid"]
        try:
            yield (shared_daemon.volume_path(name, "scratch"),
                   shared_daemon.state_dir / "pods" / uid / "kubernetes.io~empty-dir" / "scratch")
        finally:
            shared_daemon.cli("delete", "pod", name, check=False)
        return
    assert kind == "hostPath", kind
    host = scratch / f"{name}-host"
    host.mkdir(mode=0o777)
    host.chmod(0o777)
    daemon = Daemon(scratch / f"{name}-daemon", extra_args=["--allow-host-path", str(host)])
    daemon.start()
    try:
        daemon.apply(pod_manifest(name, f"    - name: scratch\n      hostPath:\n"
                                        f"        path: {host}\n        type: Directory\n"))
        yield daemon.volume_path(name, "scratch"), host
    finally:
        daemon.stop()
