"""Daemon settings: one place for the defaults the CLI and the daemon share."""

from __future__ import annotations

import grp
import hashlib
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_ROOT = Path("/var/lib/volfs")
DEFAULT_STATE_DIR = Path("/var/lib/volfs-state")
SOCKET_ENV = "VOLFS_SOCKET"
SOCKET_NAME = "volfs.sock"
DOCKER_PLUGIN_DIR = Path("/run/docker/plugins")  # where Docker looks for plugin sockets
DEFAULT_DOCKER_PLUGIN = "volfs"
LOG_FORMATS = ("text", "json")  # the first is the default
RECOVER_CONTAINERS = ("managed", "all", "none")
"""``--recover-containers``: which containers holding a dead mount the daemon restarts
when it starts (see volfs.lifecycle.recovery); the first is the default."""


def default_socket(state_dir: Path = DEFAULT_STATE_DIR) -> Path:
    """The control socket clients use: ``$VOLFS_SOCKET`` or ``<state-dir>/volfs.sock``."""
    env = os.environ.get(SOCKET_ENV)
    return Path(env) if env else state_dir / SOCKET_NAME


KUBE_API = "the Kubernetes API"
METRICS = "metrics"


def parse_kube_api(text: str) -> tuple[str, int]:
    """``--kube-api HOST:PORT`` as ``(host, port)``; the host must be a loopback IP.

    ``[::1]:PORT`` for IPv6; port 0 picks a free port (``volfs kubeconfig`` tells which).

    >>> parse_kube_api("127.0.0.1:6443"), parse_kube_api("[::1]:0")
    (('127.0.0.1', 6443), ('::1', 0))

    Raises:
        ValueError: one line saying what is wrong.
    """
    return parse_loopback(text, "127.0.0.1:6443", KUBE_API)


def parse_metrics(text: str) -> tuple[str, int]:
    """``--metrics HOST:PORT`` as ``(host, port)``, as :func:`parse_kube_api` reads it:
    Prometheus scrapes volfs on loopback only (a local agent or a tunnel forwards it).

    Raises:
        ValueError: one line saying what is wrong.
    """
    return parse_loopback(text, "127.0.0.1:9473", METRICS)


def parse_loopback(text: str, example: str, what: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT``) as ``(host, port)``; the host must be a loopback IP.
    ``what`` names the service in the error (``... served on loopback only``).

    Raises:
        ValueError: one line saying what is wrong.
    """
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{text!r}: expected HOST:PORT, e.g. {example}")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if host == "localhost":
        host = "127.0.0.1"
    try:
        loopback_address(host, what)
    except ValueError as exc:
        raise ValueError(f"{text!r}: {exc}") from None
    return host, int(port)


CSI_EXAMPLE = "unix:///run/volfs/csi.sock"


def parse_csi_endpoint(text: str) -> Path:
    """``--csi-endpoint unix:///PATH`` (or ``unix:/PATH``) as the socket's path.

    A CSI endpoint is a local socket the CO's sidecars reach on this machine: any
    other scheme (``tcp://``, ``dns:``) is refused.

    >>> parse_csi_endpoint("unix:///run/volfs/csi.sock")
    PosixPath('/run/volfs/csi.sock')

    Raises:
        ValueError: one line saying what is wrong.
    """
    scheme, sep, rest = text.partition(":")
    if not sep or scheme != "unix":
        raise ValueError(f"{text!r}: volfs serves CSI on a unix socket only, e.g. "
                         f"{CSI_EXAMPLE}")
    path = rest[2:] if rest.startswith("//") else rest
    if not path.startswith("/") or path.endswith("/") or "\0" in path:
        raise ValueError(f"{text!r}: expected unix:// and an absolute socket path, e.g. "
                         f"{CSI_EXAMPLE}")
    return Path(path)


def parse_group(text: str) -> int:
    """``--tree-group GROUP``: a group name or a numeric gid, as a gid.

    Raises:
        ValueError: one line saying what is wrong.
    """
    text = text.strip()
    if text.isdigit():
        gid = int(text)
        if gid >= 2**32 - 1:
            raise ValueError(f"{text!r}: a gid is below 4294967295")
        return gid
    try:
        return grp.getgrnam(text).gr_gid
    except KeyError:
        raise ValueError(f"{text!r}: no such group (give a group name or a numeric gid)"
                         ) from None


def loopback_address(host: str, what: str = KUBE_API
                     ) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """``host`` as an IP address, which must be a loopback one: neither the Kubernetes
    API nor the metrics (``what``) are ever served beyond this machine.

    Raises:
        ValueError: one line saying what is wrong.
    """
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{host!r} is not an IP address") from None
    if not address.is_loopback:
        raise ValueError(f"{host} is not a loopback address; volfs serves {what} on "
                         "loopback only (127.0.0.1 or ::1)")
    return address


def default_memory_dir(state_dir: Path) -> Path:
    """Where Memory-medium EmptyDirs live: a tmpfs (/dev/shm), one folder per state dir.

    Keyed by the state dir so two daemons (tests run several) never share it.
    """
    digest = hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:12]
    return Path("/dev/shm") / f"volfs-{digest}"


@dataclass(frozen=True)
class DaemonConfig:
    """Everything ``volfs serve`` needs to know; built from its flags."""

    root: Path = DEFAULT_ROOT
    state_dir: Path = DEFAULT_STATE_DIR
    socket: Path | None = None  # None: <state_dir>/volfs.sock
    memory_dir: Path | None = None  # None: default_memory_dir(state_dir)
    kube_api: tuple[str, int] | None = None  # loopback (host, port); None: no TCP listener
    metrics: tuple[str, int] | None = None  # loopback (host, port) of /metrics; None: none
    hook_timeout: float = 30.0
    allow_host_paths: tuple[str, ...] = ()  # "PREFIX" or "PREFIX:ro"; none: no hostPath
    debug: bool = False
    log_format: str = LOG_FORMATS[0]  # "text" for people, "json" one object per line
    docker_host: str | None = None  # None: $DOCKER_HOST or unix:///run/docker.sock
    docker_plugin: str = DEFAULT_DOCKER_PLUGIN  # "": serve no Docker volume plugin
    docker_plugin_dir: Path = DOCKER_PLUGIN_DIR
    tree_gid: int = 0  # the group with r-x on the synthetic tree (mode 0750); 0: root only
    recover_containers: str = RECOVER_CONTAINERS[0]  # one of RECOVER_CONTAINERS
    keep_connection: bool = False  # a keeper holds the FUSE connection (a prototype)
    csi_endpoint: Path | None = None  # the CSI v1 gRPC socket; None: CSI not served
    csi_node_id: str = ""  # NodeGetInfo's node id; "": this host's name
    writeback_cache: bool = False  # the kernel gathers writes (docs/options.md: trade-offs)

    @property
    def socket_path(self) -> Path:
        return self.socket or self.state_dir / SOCKET_NAME

    @property
    def memory_path(self) -> Path:
        return self.memory_dir or default_memory_dir(self.state_dir)

    @property
    def hooks_dir(self) -> Path:
        return self.state_dir / "hooks"

    @property
    def disk_volumes_dir(self) -> Path:
        """Disk-medium EmptyDirs: ``<state-dir>/pods/<uid>/kubernetes.io~empty-dir/<name>``."""
        return self.state_dir / "pods"

    @property
    def metrics_address_path(self) -> Path:
        """Where the daemon writes the ``HOST:PORT`` it serves /metrics on (port 0 picks)."""
        return self.state_dir / "metrics.address"

    @property
    def database_path(self) -> Path:
        return self.state_dir / "state.db"

    @property
    def docker_plugin_socket(self) -> Path | None:
        """``<docker-plugin-dir>/<name>.sock``, or None when no plugin is served."""
        if not self.docker_plugin:
            return None
        return self.docker_plugin_dir / f"{self.docker_plugin}.sock"
