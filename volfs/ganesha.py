"""A private nfs-ganesha on loopback: the NFS server of tests, and of users who have none.

:class:`Ganesha` writes its own config (one FSAL_VFS export of a directory,
``No_Root_Squash``, NFSv3 and v4, TCP, bound to 127.0.0.1 on ports of its own)
and runs ``ganesha.nfsd -F`` with its pid, log and recovery files in a work
directory. Nothing system-wide is touched:

- ganesha refuses to start unless it can register with a portmapper, but
  volfs's client never asks one (it is given the ports). So ganesha runs in a
  mount namespace of its own whose ``/run`` is a private tmpfs, with an
  ``rpcbind`` there (in an empty network namespace: it answers only ganesha,
  through ``/run/rpcbind.sock``), stopped as soon as ganesha has registered.
  The host's rpcbind, if any, is neither used nor disturbed, and several
  servers (one per test worker) run side by side.
- The server dies with the process that started it (``PR_SET_PDEATHSIG``).

Run ``python -m volfs.ganesha [EXPORT_DIR]`` (``scripts/nfs-server``)
to serve a directory until Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

GANESHA = "ganesha.nfsd"
LOOPBACK = "127.0.0.1"
START_SECONDS = 30.0

_WRAPPER = r"""
set -e
mount -t tmpfs -o mode=0755,size=1m volfs-nfs-run /run
mkdir -m 0755 /run/rpcbind
chown _rpc /run/rpcbind 2>/dev/null || true
unshare --net rpcbind -f &
echo $! > "$1/rpcbind.pid"
i=0
while [ ! -S /run/rpcbind.sock ]; do
    i=$((i + 1)); [ "$i" -lt 250 ] || { echo "rpcbind did not start" >&2; exit 1; }
    sleep 0.02
done
exec ganesha.nfsd -F -f "$1/ganesha.conf" -L "$1/ganesha.log" -p "$1/ganesha.pid"
"""

_CONFIG = """\
NFS_CORE_PARAM {{
    Bind_addr = {bind};
    NFS_Port = {nfs_port};
    MNT_Port = {mount_port};
    Enable_NLM = false;
    Enable_RQUOTA = false;
    Enable_UDP = false;
    Protocols = 3, 4;
}}
NFSv4 {{
    Graceless = true;
    RecoveryBackend = fs;
    RecoveryRoot = "{work}/recovery";
}}
EXPORT {{
    Export_Id = 1;
    Path = "{export}";
    Pseudo = "{pseudo}";
    Access_Type = None;
    Squash = No_Root_Squash;
    SecType = sys;
    Protocols = 3, 4;
    Transports = TCP;
    # Tests (and users) change the directory behind ganesha's back: no caching.
    Attr_Expiration_Time = 0;
    FSAL {{ Name = VFS; }}
    CLIENT {{ Clients = {bind}; Access_Type = RW; }}
}}
LOG {{ Default_Log_Level = EVENT; }}
"""


class GaneshaError(RuntimeError):
    """The server would not start; ``str()`` says why, with the end of its log."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def check_ports(nfs_port: int, mount_port: int) -> None:
    """Raise GaneshaError, in one line saying how to choose others, if a port is taken.

    A port is taken when a socket cannot be bound on ``LOOPBACK`` there (another NFS
    server, often the kernel's on 2049, or any other listener); started over a taken
    port, ganesha would fail with its whole log.
    """
    taken = []
    for what, port in (("NFS", nfs_port), ("MOUNT", mount_port)):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((LOOPBACK, port))
            except OSError as exc:
                why = "in use" if exc.errno == errno.EADDRINUSE else f"not free ({exc.strerror})"
                taken.append(f"{what} port {port} is {why}")
    if nfs_port == mount_port and nfs_port:
        taken.append(f"the NFS and MOUNT ports are both {nfs_port}")
    if taken:
        raise GaneshaError(f"{'; '.join(taken)} on {LOOPBACK} (another NFS server?); choose "
                           "others with --port N --mount-port M, e.g. --port 20490 "
                           "--mount-port 20491")


def _answers(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        try:
            sock.connect((LOOPBACK, port))
        except OSError:
            return False
        return True


@dataclass
class Ganesha:
    """One private ganesha serving ``export_dir`` (see the module docstring).

    Ports 0 are chosen free at the first start and kept across stop/start, so a
    client that knew the server finds it again.
    """

    export_dir: Path
    work_dir: Path
    nfs_port: int = 0
    mount_port: int = 0
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def server(self) -> str:
        return LOOPBACK

    @property
    def export(self) -> str:
        return str(self.export_dir)

    @property
    def log_path(self) -> Path:
        return self.work_dir / "ganesha.log"

    @property
    def mount_options(self) -> list[str]:
        """What a PersistentVolume's ``mountOptions`` needs to reach this server."""
        return ["nfsvers=3", f"port={self.nfs_port}", f"mountport={self.mount_port}"]

    def path(self, sub_dir: str = "", **options: object) -> str:
        """An inline ``nfs.path`` for ``sub_dir``, with the ports (and ``options``) as URL
        arguments: ``/export/sub?nfsport=N&mountport=M&soft&timeo=20``."""
        path = self.export.rstrip("/") + ("/" + sub_dir.strip("/") if sub_dir else "")
        args = [f"nfsport={self.nfs_port}", f"mountport={self.mount_port}"]
        for name, value in options.items():
            args.append(name if value is True else f"{name}={quote(str(value))}")
        return f"{path}?{'&'.join(args)}"

    def url(self, sub_path: str = "") -> str:
        """A libnfs URL (for ``nfs-cp``, ``nfs-ls``)."""
        path = self.export.rstrip("/") + ("/" + sub_path.lstrip("/") if sub_path else "")
        return f"nfs://{LOOPBACK}{path}?nfsport={self.nfs_port}&mountport={self.mount_port}"

    def stanza(self, sub_dir: str = "") -> str:
        return f"nfs:\n  server: {self.server}\n  path: \"{self.path(sub_dir)}\"\n"

    # -- running -------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = START_SECONDS) -> Ganesha:
        """Start (or start again) and wait until it answers; GaneshaError if it does not."""
        if self.running:
            return self
        for program in (GANESHA, "rpcbind", "unshare", "setpriv"):
            if shutil.which(program) is None and not Path("/usr/sbin", program).exists():
                raise GaneshaError(f"{program} is not installed (scripts/setup installs "
                                   f"nfs-ganesha, nfs-ganesha-vfs and rpcbind)")
        self.export_dir.mkdir(parents=True, exist_ok=True)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        (self.work_dir / "recovery").mkdir(exist_ok=True)
        chosen = not (self.nfs_port and self.mount_port)
        for attempt in range(3):
            if chosen:
                self.nfs_port, self.mount_port = free_port(), free_port()
                while self.mount_port == self.nfs_port:
                    self.mount_port = free_port()
            try:
                self._launch(timeout)
                return self
            except GaneshaError:
                if not chosen or attempt == 2:
                    raise  # ports of the caller's choice, or out of attempts
        raise AssertionError("unreachable")

    def _launch(self, timeout: float) -> None:
        (self.work_dir / "ganesha.conf").write_text(_CONFIG.format(
            bind=LOOPBACK, nfs_port=self.nfs_port, mount_port=self.mount_port,
            work=self.work_dir, export=self.export_dir, pseudo=self.export_dir))
        with contextlib.suppress(FileNotFoundError):
            self.log_path.unlink()
        env = dict(os.environ, PATH=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
        with open(self.work_dir / "ganesha.out", "ab") as out:
            self.proc = subprocess.Popen(
                ["setpriv", "--pdeathsig", "KILL", "unshare", "--mount", "--propagation",
                 "private", "sh", "-c", _WRAPPER, "ganesha-wrapper", str(self.work_dir)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise GaneshaError(f"ganesha.nfsd exited with {self.proc.returncode}"
                                       f"{self._log_tail()}")
                if (b"NFS SERVER INITIALIZED" in self._log_bytes()
                        and _answers(self.nfs_port) and _answers(self.mount_port)):
                    return
                time.sleep(0.05)
            raise GaneshaError(f"ganesha.nfsd did not answer within {timeout:.0f}s"
                               f"{self._log_tail()}")
        except BaseException:
            self.stop()
            raise
        finally:
            self._stop_rpcbind()  # ganesha has registered (or failed): no longer needed

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL); safe to repeat."""
        proc, self.proc = self.proc, None
        self._stop_rpcbind()
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def kill(self) -> None:
        """Die at once, as a crashed server does."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(5)

    def _stop_rpcbind(self) -> None:
        pid_file = self.work_dir / "rpcbind.pid"
        try:
            pid = int(pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return
        pid_file.unlink()
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)

    def _log_bytes(self) -> bytes:
        try:
            return self.log_path.read_bytes()
        except FileNotFoundError:
            return b""

    def _log_tail(self) -> str:
        lines = []
        for path in (self.work_dir / "ganesha.out", self.log_path):
            with contextlib.suppress(FileNotFoundError):
                text = path.read_text(errors="replace").splitlines()
                lines += [line for line in text if "DBUS" not in line][-12:]
        return (":\n" + "\n".join(lines)) if lines else ""

    def __enter__(self) -> Ganesha:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="nfs-server", description="Serve a directory over NFS (v3 and v4) on 127.0.0.1 "
        "with a private nfs-ganesha, until Ctrl-C.")
    parser.add_argument("export_dir", nargs="?", default="/var/lib/volfs-nfs",
                        help="the directory to export (made if missing; default %(default)s)")
    parser.add_argument("--port", type=int, default=2049, help="NFS port (default %(default)s)")
    parser.add_argument("--mount-port", type=int, default=20048,
                        help="MOUNT port (default %(default)s)")
    args = parser.parse_args(argv)
    try:
        check_ports(args.port, args.mount_port)
    except GaneshaError as exc:
        print(f"nfs-server: {exc}", file=sys.stderr)
        return 1
    if os.geteuid() != 0:
        print("nfs-server: must run as root (ganesha serves files as their owners)",
              file=sys.stderr)
        return 1
    export = Path(args.export_dir).resolve()
    export.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="volfs-nfs-server-"))
    server = Ganesha(export, work, nfs_port=args.port, mount_port=args.mount_port)
    try:
        server.start()
    except GaneshaError as exc:
        print(f"nfs-server: {exc}", file=sys.stderr)
        shutil.rmtree(work, ignore_errors=True)
        return 1
    standard = args.port == 2049 and args.mount_port == 20048
    path = server.export if standard else server.path()
    print(f"nfs-server: serving {export} on {LOOPBACK}:{args.port} (mountd {args.mount_port}); "
          f"log in {server.log_path}")
    print("Use it in a pod:\n"
          "  volumes:\n"
          "    - name: data\n"
          "      nfs:\n"
          f"        server: {LOOPBACK}\n"
          f"        path: \"{path}\"")
    print("or in a PersistentVolume:\n"
          "  nfs:\n"
          f"    server: {LOOPBACK}\n"
          f"    path: {server.export}\n"
          + ("" if standard else "  mountOptions: [" + ", ".join(server.mount_options) + "]\n"))
    print("Ctrl-C stops it.", flush=True)
    try:
        while server.running:
            time.sleep(0.5)
        print("nfs-server: ganesha.nfsd exited" + server._log_tail(), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nnfs-server: stopping")
        return 0
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
