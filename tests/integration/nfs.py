"""nfs-ganesha for the tests: a private server per test worker, and per-test shares.

The server itself is :class:`volfs.ganesha.Ganesha` (the one
``scripts/nfs-server`` runs for users): loopback only, ports of its own, no
system-wide rpcbind. Each xdist worker starts one for the session; each test
gets a directory of its own in that export (:class:`NfsShare`). Tests that stop
or kill the server get a server of their own (the ``own_ganesha`` fixture).
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from pathlib import Path

from volfs.ganesha import Ganesha, GaneshaError

__all__ = ["Ganesha", "GaneshaError", "NfsShare", "new_share"]

_shares = itertools.count()


@dataclass(frozen=True)
class NfsShare:
    """A directory of a test's own in a ganesha export."""

    ganesha: Ganesha
    sub_dir: str

    @property
    def dir(self) -> Path:
        """The directory on disk, as the server stores it."""
        return self.ganesha.export_dir / self.sub_dir

    @property
    def server(self) -> str:
        return self.ganesha.server

    @property
    def export(self) -> str:
        """The path a PersistentVolume names (its ports go in ``mount_options``)."""
        return str(self.dir)

    @property
    def mount_options(self) -> list[str]:
        return self.ganesha.mount_options

    def path(self, **options: object) -> str:
        """An inline ``nfs.path`` with the ports (and ``options``) as URL arguments."""
        return self.ganesha.path(self.sub_dir, **options)

    def volume(self, name: str = "data", read_only: bool = False, **options: object) -> str:
        """A pod's ``volumes:`` item (YAML) for this share."""
        ro = "\n        readOnly: true" if read_only else ""
        return (f"    - name: {name}\n      nfs:\n        server: {self.server}\n"
                f"        path: \"{self.path(**options)}\"{ro}\n")


def new_share(ganesha: Ganesha, name: str) -> NfsShare:
    """A fresh, world-writable directory in the export (as a provisioner would make)."""
    sub_dir = f"{name[:40]}-{os.getpid()}-{next(_shares)}"
    path = ganesha.export_dir / sub_dir
    path.mkdir(parents=True)
    path.chmod(0o777)
    return NfsShare(ganesha, sub_dir)


def server_sockets(ganesha: Ganesha) -> int:
    """How many sockets the server process holds now (listeners and connections)."""
    pid = int((ganesha.work_dir / "ganesha.pid").read_text().strip())
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
        except FileNotFoundError:
            continue  # closed while we looked
    return count


def connections_reset(ganesha: Ganesha) -> int:
    """How many client connections the server has seen reset so far (its log says each)."""
    try:
        text = ganesha.log_path.read_bytes()
    except FileNotFoundError:
        return 0
    return text.count(b"recv errno 104")
