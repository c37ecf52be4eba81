"""The filesystems `scripts/bench local` compares, mounted over the same two sources.

One scratch directory under /var/tmp holds a disk source and a tmpfs mounted for the
run. Over each source: native (the directory itself), bindfs, mergerfs, floorfs (the
do-nothing pyfuse3 passthrough) and volfs (one daemon: EmptyDirs whose backing lies on
that source, and a HostPath volume over it). ``Stack.close`` unmounts and stops all of
it, whatever state ``open`` reached.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.integration.daemon import Daemon

REPO = Path(__file__).resolve().parents[2]
TMPFS_SIZE = "8g"  # room for every target's read file and the largest write at once
DISK_LIMIT = "64Gi"  # the sizeLimit of the limited disk EmptyDir: never reached, only kept
WRITEBACK = "volfs-emptydir-wb"  # an EmptyDir of a daemon run with --writeback-cache
MOUNT_WAIT = 20.0  # seconds for a FUSE daemon to mount


class StackError(Exception):
    """A baseline or volfs did not come up; ``str()`` is one line."""


@dataclass
class Target:
    """One filesystem under test on one source."""

    name: str  # native, bindfs, mergerfs, floor, volfs-emptydir, ...
    source: str  # disk or tmpfs
    path: Path  # where the workloads run
    backing: Path  # where its bytes really are (for cache drops and checks)
    pid: int | None = None  # the FUSE daemon whose CPU time is counted, if any


@dataclass
class Stack:
    """Everything mounted for one run, in the order it must be undone."""

    base: Path
    sources: dict[str, Path] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    _procs: list[tuple[subprocess.Popen[bytes], Path]] = field(default_factory=list)
    _tmpfs: Path | None = None
    _daemons: list[Daemon] = field(default_factory=list)

    @classmethod
    def open(cls, names: list[str]) -> Stack:
        """Mount every target named in ``names`` (all by default) over both sources."""
        stack = cls(Path(tempfile.mkdtemp(prefix="volfs-bench-local-", dir="/var/tmp")))
        try:
            stack._open(names)
        except BaseException:
            stack.close()
            raise
        return stack

    def _open(self, names: list[str]) -> None:
        self.base.chmod(0o755)
        self.sources["disk"] = self.base / "disk"
        self.sources["disk"].mkdir()
        self._tmpfs = self.sources["tmpfs"] = self.base / "tmpfs"
        self._tmpfs.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=0755",
                        "volfs-bench", str(self._tmpfs)], check=True, capture_output=True)
        for source, root in self.sources.items():
            self.targets.append(Target("native", source, _made(root / "native"),
                                       root / "native"))
            for name, command in (("bindfs", ["bindfs", "-f"]),
                                  ("mergerfs", ["mergerfs", "-f"]),
                                  ("floor", [sys.executable, "-m",
                                             "scripts.benchlib.floorfs"])):
                if name in names:
                    self._fuse(name, source, command)
        if any(name.startswith("volfs") and name != WRITEBACK for name in names):
            self._volfs(names)
        if WRITEBACK in names:
            self._volfs_writeback()
        self.targets = [t for t in self.targets if t.name in names or t.name == "native"]

    def _fuse(self, name: str, source: str, command: list[str]) -> None:
        backing = _made(self.sources[source] / name)
        mountpoint = _made(self.base / "mnt" / f"{source}-{name}")
        proc = subprocess.Popen([*command, str(backing), str(mountpoint)], cwd=REPO,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, start_new_session=True)
        self._procs.append((proc, mountpoint))
        deadline = time.monotonic() + MOUNT_WAIT
        while not os.path.ismount(mountpoint):
            if proc.poll() is not None or time.monotonic() > deadline:
                error = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                raise StackError(f"{name} did not mount {mountpoint}: "
                                 f"{error.strip().splitlines()[-1:] or 'no message'}")
            time.sleep(0.05)
        self.targets.append(Target(name, source, mountpoint, backing, proc.pid))

    def _volfs(self, names: list[str]) -> None:
        from tests.integration.daemon import Daemon, pod_manifest

        hostpaths = {source: _made(root / "hostpath") for source, root in self.sources.items()}
        memory = self.sources["tmpfs"] / "volfs-memory"
        daemon = Daemon(self.base / "volfs", extra_args=[
            "--memory-dir", str(memory),
            *(arg for path in hostpaths.values() for arg in ("--allow-host-path", str(path)))])
        self._daemons.append(daemon)
        daemon.start()
        volumes = {  # volume name -> (target name, source)
            "disk-emptydir": ("volfs-emptydir", "disk"),
            "disk-emptydir-limit": ("volfs-emptydir-limit", "disk"),
            "disk-hostpath": ("volfs-hostpath", "disk"),
            "tmpfs-emptydir": ("volfs-emptydir", "tmpfs"),
            "tmpfs-hostpath": ("volfs-hostpath", "tmpfs"),
        }
        daemon.apply(pod_manifest("bench", f"""\
    - name: disk-emptydir
      emptyDir: {{}}
    - name: disk-emptydir-limit
      emptyDir:
        sizeLimit: {DISK_LIMIT}
    - name: disk-hostpath
      hostPath:
        path: {hostpaths["disk"]}
        type: Directory
    - name: tmpfs-emptydir
      emptyDir:
        medium: Memory
    - name: tmpfs-hostpath
      hostPath:
        path: {hostpaths["tmpfs"]}
        type: Directory
"""))
        self._add_volfs_targets(daemon, volumes, [*hostpaths.values(), memory])

    def _volfs_writeback(self) -> None:
        """A second daemon with ``--writeback-cache`` (one setting per mount), serving
        the same two EmptyDirs, so the lever shows beside the default in one run."""
        from tests.integration.daemon import Daemon, pod_manifest

        memory = self.sources["tmpfs"] / "volfs-wb-memory"
        daemon = Daemon(self.base / "volfs-wb",
                        extra_args=["--memory-dir", str(memory), "--writeback-cache"])
        self._daemons.append(daemon)
        daemon.start()
        daemon.apply(pod_manifest("bench", """\
    - name: disk-emptydir
      emptyDir: {}
    - name: tmpfs-emptydir
      emptyDir:
        medium: Memory
"""))
        self._add_volfs_targets(daemon, {"disk-emptydir": (WRITEBACK, "disk"),
                                         "tmpfs-emptydir": (WRITEBACK, "tmpfs")}, [memory])

    def _add_volfs_targets(self, daemon: Daemon, volumes: dict[str, tuple[str, str]],
                           elsewhere: list[Path]) -> None:
        for volume, (name, source) in volumes.items():
            path = daemon.volume_path("bench", volume)
            backing = self._backing_of(path, [*elsewhere, daemon.state_dir])
            if os.stat(backing).st_dev != os.stat(self.sources[source]).st_dev:
                raise StackError(f"volfs's {volume} lives in {backing}, not on the {source} "
                                 f"source {self.sources[source]}")
            self.notes.append(f"{name} {volume}: bytes in {backing}")
            self.targets.append(Target(name, source, path, backing, daemon.pid))

    @staticmethod
    def _backing_of(volume: Path, candidates: list[Path]) -> Path:
        """Where a file written through ``volume`` really landed (searched, not assumed)."""
        marker = f".bench-marker-{os.getpid()}-{time.monotonic_ns()}"
        (volume / marker).write_bytes(b"")
        try:
            for top in candidates:
                for where, _, files in os.walk(top):
                    if marker in files:
                        return Path(where)
            raise StackError(f"a file written into {volume} is in none of "
                             f"{', '.join(map(str, candidates))}")
        finally:
            (volume / marker).unlink()

    def close(self) -> None:
        """Unmount and stop everything this stack started; safe to call twice."""
        for proc, mountpoint in reversed(self._procs):
            subprocess.run(["fusermount3", "-u", str(mountpoint)], capture_output=True,
                           check=False)
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            subprocess.run(["fusermount3", "-uz", str(mountpoint)], capture_output=True,
                           check=False)
        self._procs.clear()
        while self._daemons:
            self._daemons.pop().stop()
        if self._tmpfs is not None:
            subprocess.run(["umount", "-l", str(self._tmpfs)], capture_output=True,
                           check=False)
            self._tmpfs = None
        subprocess.run(["rm", "-rf", "--one-file-system", str(self.base)], check=False)


def _made(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
