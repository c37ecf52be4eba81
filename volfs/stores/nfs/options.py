"""Where an NFS volume lives and how to talk to it: server, export path, mount options.

Mount options are the Linux ``mount -t nfs`` ones a PersistentVolume lists in
``mountOptions`` (each entry may hold several, comma-separated). An inline
``nfs:`` volume has no ``mountOptions`` in Kubernetes, so its ``path`` may carry
them as libnfs URL arguments: ``/export?nfsport=20490&mountport=20491&soft&timeo=20``
(``nfsport``/``version`` are libnfs's names for ``port``/``nfsvers``).

Timeouts follow nfs(5): ``timeo`` in tenths of a second (600), ``retrans`` (2).
``soft`` fails a call with EIO after ``timeo x (retrans + 1)``; ``softerr`` the
same with ETIMEDOUT. ``hard`` (the default) re-sends through outages, but volfs
never waits without end: it gives up (EIO) after ``retry`` minutes (2) or the
soft bound, whichever is longer.
"""

from __future__ import annotations

import errno
import posixpath
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import parse_qsl

from volfs.stores.nfs.rpc import Timeouts

DEFAULT_NFS_PORT = 2049
DEFAULT_MOUNT_PORT = 20048  # mountd's registered port, where the portmapper does not answer

# Options that change nothing for a user-space client (caching, locking and
# mount-helper details), accepted so that manifests written for kubelet apply.
_IGNORED = {
    "ac", "noac", "actimeo", "acregmin", "acregmax", "acdirmin", "acdirmax", "lookupcache",
    "cto", "nocto", "lock", "nolock", "local_lock", "intr", "nointr", "bg", "fg", "sync",
    "async", "noatime", "atime", "nodiratime", "relatime", "strictatime", "nosuid", "suid",
    "nodev", "dev", "noexec", "exec", "_netdev", "resvport", "noresvport", "sharecache",
    "nosharecache", "fsc", "nofsc", "rsize", "wsize", "namlen", "addr", "clientaddr",
    "mountaddr", "mounthost", "defaults", "auto", "noauto", "user", "nouser", "rdirplus",
    "nordirplus", "posix", "noposix", "nconnect", "max_connect", "fsid", "context",
    "fscontext", "defcontext", "rootcontext",
}


class OptionError(ValueError):
    """A mount option volfs cannot honour; ``str()`` is one line naming it."""


@dataclass(frozen=True)
class NfsOptions:
    version: int = 3
    port: int | None = None  # NFS; None: ask the portmapper, else 2049
    mount_port: int | None = None  # MOUNT; None: ask the portmapper, else 20048
    soft: bool = False
    soft_errno: int = errno.EIO
    timeo: int = 600  # tenths of a second
    retrans: int = 2
    retry_minutes: float = 2.0
    read_only: bool = False

    @classmethod
    def parse(cls, options: Iterable[str]) -> NfsOptions:
        """Options as ``mountOptions`` gives them; OptionError on one volfs cannot honour."""
        values: dict[str, object] = {}
        for entry in options:
            for option in str(entry).split(","):
                option = option.strip()
                if option:
                    _apply(values, option)
        return cls(**values)  # type: ignore[arg-type]

    @property
    def timeouts(self) -> Timeouts:
        attempt = self.timeo / 10
        soft_total = attempt * (self.retrans + 1)
        if self.soft:
            return Timeouts(attempt=attempt, total=soft_total, errno=self.soft_errno)
        return Timeouts(attempt=attempt, total=max(soft_total, self.retry_minutes * 60))


def _number(name: str, value: str, kind: type = int) -> float:
    try:
        number = kind(value)
    except ValueError:
        raise OptionError(f"mount option {name}={value}: not a number") from None
    if number < 0:
        raise OptionError(f"mount option {name}={value}: must not be negative")
    return number  # type: ignore[no-any-return]


def _apply(values: dict[str, object], option: str) -> None:
    name, has_value, value = option.partition("=")
    name = name.strip().lower()
    value = value.strip()
    if name in ("nfsvers", "vers", "version"):
        if value not in ("3", "3.0"):
            raise OptionError(f"mount option {option}: volfs speaks NFS version 3 only "
                              f"(use nfsvers=3 or leave it out)")
        values["version"] = 3
    elif name in ("port", "nfsport"):
        port = int(_number(name, value))
        values["port"] = port or None  # port=0: ask the portmapper, as mount.nfs does
    elif name == "mountport":
        port = int(_number(name, value))
        values["mount_port"] = port or None
    elif name in ("soft", "softerr"):
        values["soft"] = True
        values["soft_errno"] = errno.ETIMEDOUT if name == "softerr" else errno.EIO
    elif name == "hard":
        values["soft"] = False
    elif name == "timeo":
        timeo = int(_number(name, value))
        if timeo == 0:
            raise OptionError(f"mount option {option}: must be at least 1 (tenths of a second)")
        values["timeo"] = timeo
    elif name == "retrans":
        values["retrans"] = int(_number(name, value))
    elif name == "retry":
        values["retry_minutes"] = _number(name, value, float)
    elif name == "ro":
        values["read_only"] = True
    elif name == "rw":
        values["read_only"] = False
    elif name in ("proto", "mountproto"):
        if value not in ("tcp", "tcp6"):
            raise OptionError(f"mount option {option}: volfs speaks NFS over TCP only")
    elif name in ("tcp",):
        pass
    elif name in ("udp",):
        raise OptionError(f"mount option {option}: volfs speaks NFS over TCP only")
    elif name == "sec":
        if value not in ("sys", "unix", ""):
            raise OptionError(f"mount option {option}: volfs supports sec=sys only")
    elif name == "mountvers":
        if value != "3":
            raise OptionError(f"mount option {option}: volfs speaks MOUNT version 3 only")
    elif name in _IGNORED:
        pass
    else:
        raise OptionError(f"mount option {option}: not known to volfs")


@dataclass(frozen=True)
class NfsTarget:
    """One directory on one server: ``server:export``, the options, and how users name it."""

    server: str
    export: str  # the path the MOUNT protocol is asked for, normalised
    options: NfsOptions

    @classmethod
    def parse(cls, server: str, path: str, mount_options: Iterable[str] = ()) -> NfsTarget:
        """``path`` may end in ``?arg=value&...`` (libnfs URL arguments, or mount options)."""
        server = server.strip()
        if not server:
            raise OptionError("server: must not be empty")
        if server.startswith("[") and server.endswith("]"):
            server = server[1:-1]  # an IPv6 address as URLs write it
        export, _, query = path.partition("?")
        if not export.startswith("/"):
            raise OptionError(f"path {path}: must be absolute")
        extra = [f"{k}={v}" if v else k for k, v in parse_qsl(query, keep_blank_values=True)]
        options = NfsOptions.parse([*mount_options, *extra])
        return cls(server, _normalise(export), options)

    def __str__(self) -> str:
        return f"{self.server}:{self.export}"

    def below(self, sub_dir: str) -> NfsTarget:
        """The same server and options, ``sub_dir`` further down the export."""
        parts = split_relative(sub_dir)
        export = posixpath.join(self.export, *parts) if parts else self.export
        return NfsTarget(self.server, export, self.options)


def _normalise(path: str) -> str:
    parts = [p for p in path.split("/") if p and p != "."]
    if ".." in parts:
        raise OptionError(f"path {path}: must not contain '..'")
    return "/" + "/".join(parts)


def split_relative(sub_dir: str) -> list[str]:
    """The components of a relative path below a share (``a/b``); ValueError on ``..``."""
    if sub_dir.startswith("/"):
        raise OptionError(f"sub-directory {sub_dir}: must be relative to the share")
    parts = [p for p in sub_dir.split("/") if p and p != "."]
    if ".." in parts:
        raise OptionError(f"sub-directory {sub_dir}: must not contain '..'")
    return parts
