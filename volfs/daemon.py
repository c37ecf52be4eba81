"""``volfs serve``: wire the layers together and run until SIGINT/SIGTERM.

Start-up order matters: the state is restored and every known pod's volumes
are set up *before* the mount appears, so a client never sees a half-restored
tree; the control socket (and Docker's volume-plugin socket) answer only once
the mount is up.

The mount and the control socket are the daemon's job: if either fails, it stops
with one line saying why. The Docker volume plugin, the ``--kube-api`` and
``--metrics`` listeners and the ``--csi-endpoint`` are optional: if one cannot be
served, a warning says why and how to fix it, and everything else is served.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import errno
import fcntl
import functools
import logging
import os
import resource
import signal
import socket
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio
from starlette.types import ASGIApp

from volfs import logs
from volfs.config import DaemonConfig
from volfs.controllers.storage import StorageController
from volfs.fs import Filesystem, keeper
from volfs.fs.keeper import KeeperError
from volfs.fs.mount import MountPointBusy
from volfs.fs.takeover import TakeoverError
from volfs.lifecycle.claims import ClaimPlugin
from volfs.lifecycle.hooks import ON_CREATE, ON_DELETE, HookRunner
from volfs.lifecycle.hostpath import HostPathPlugin, allowed_prefixes
from volfs.lifecycle.nfs import NfsPlugin
from volfs.lifecycle.pods import PodManager
from volfs.lifecycle.recovery import ContainerRecovery, RecoveryPolicy
from volfs.lifecycle.volumes import EmptyDirPlugin, PluginRegistry
from volfs.notify import notify
from volfs.persistent import NfsSource, PersistentSources
from volfs.runtime import RuntimeFailed, RuntimeUnavailable
from volfs.runtime.docker import DockerRuntime, default_docker_host
from volfs.server.app import create_app
from volfs.server.docker_plugin import REFS_FILE, DockerVolumes, MountRefs, create_plugin_app
from volfs.server.kinds import (
    PERSISTENT_VOLUME_CLAIMS,
    PERSISTENT_VOLUMES,
    STORAGE_CLASSES,
    core_registry,
    register_workloads,
)
from volfs.server.metrics import (
    create_metrics_app,
    phase_gatherer,
    serve_metrics,
    volume_gatherer,
)
from volfs.server.serve import SocketInUse, serve_unix
from volfs.server.storage import ClaimResource, ClassResource, VolumeResource
from volfs.server.watch import OpenWatches
from volfs.state import AsyncStateDB, StateDB
from volfs.state.events import EventRecorder
from volfs.stores.nfs import NfsShares
from volfs.stores.nfs.rpc import background_tasks as nfs_background_tasks
from volfs.workloads import Workloads

if TYPE_CHECKING:
    # Imported where --csi-endpoint is given: gRPC and the CSI protobufs cost every start
    # without it ~0.1 s before the mount.
    from volfs.csi import CsiVolumes

    # Imported where a --kube-api or --metrics listener is asked for: its module (with
    # cryptography, for the listener's certificate) costs a start without them ~0.1 s.
    from volfs.server.kubeapi import Credentials

log = logging.getLogger("volfs.daemon")


class StartupError(Exception):
    """The daemon cannot start; ``str()`` says why in one line."""


_EXPECTED = (StartupError, MountPointBusy, TakeoverError, KeeperError)


def run(config: DaemonConfig) -> int:
    """Serve until SIGINT/SIGTERM; returns the process exit status.

    Every line goes through the log (``--log-format``): an expected failure to start
    (a busy mount point, a locked state dir) is one error line; an unexpected exception
    (a bug) is logged once, with its traceback.
    """
    logs.configure(config.log_format, config.debug)
    if os.geteuid() != 0:
        log.error("serve must run as root (it mounts FUSE with allow_other and gives "
                  "files to their callers)")
        return 1
    try:
        trio.run(_serve, config)
    except _EXPECTED as exc:
        log.error("%s", exc)
        return 1
    except BaseExceptionGroup as group:  # raised inside the serving nursery
        expected, rest = group.split(_EXPECTED)
        if expected is None or rest is not None:
            log.critical("stopped by an unexpected error", exc_info=group)
            return 1
        first: BaseException = expected
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        log.error("%s", first)
        return 1
    except Exception:
        log.critical("stopped by an unexpected error", exc_info=True)
        return 1
    return 0


async def _serve(config: DaemonConfig) -> None:
    # A symlinked --root must be judged (is something mounted there?) where it leads.
    config = dataclasses.replace(config, root=_resolved(config.root, config.keep_connection))
    try:
        allow = allowed_prefixes(config.allow_host_paths)
    except ValueError as exc:
        raise StartupError(str(exc)) from None
    _raise_fd_limit()
    # The kernel has already applied each caller's umask to the modes it sends;
    # the daemon's own files and directories get explicit modes.
    os.umask(0)
    for private in (config.state_dir, config.disk_volumes_dir, config.memory_path):
        _make_private_dir(private)
    for public in (config.hooks_dir, config.hooks_dir / ON_CREATE, config.hooks_dir / ON_DELETE):
        public.mkdir(mode=0o755, exist_ok=True)
    started = datetime.datetime.now(datetime.UTC)
    # Start-up in order; teardown in reverse, whatever fails: the servers and the
    # mount stop first, then every store is closed, then the database, then the lock.
    async with contextlib.AsyncExitStack() as stack:
        stack.enter_context(_exclusive(config.state_dir))
        db = stack.enter_context(_opened(config.database_path))
        kube_api = stack.enter_context(_kube_api_listener(config))
        metrics_sock = stack.enter_context(_metrics_listener(config))
        await stack.enter_async_context(nfs_background_tasks())  # outlives every NFS store
        fs = Filesystem(statfs_path=str(config.state_dir), tree_gid=config.tree_gid,
                        writeback_cache=config.writeback_cache)
        state = AsyncStateDB(db)
        nfs_source = NfsSource(NfsShares())
        sources = PersistentSources([nfs_source])  # the PV kinds served
        storage = StorageController(state, sources, EventRecorder(state))
        engine = DockerRuntime(config.docker_host or default_docker_host(), owner=str(config.root))
        claims = ClaimPlugin(storage, sources)
        pods = PodManager(
            state, fs,
            PluginRegistry([EmptyDirPlugin(config.disk_volumes_dir, config.memory_path),
                            HostPathPlugin(allow), NfsPlugin(), claims]),
            HookRunner(config.hooks_dir, config.root, config.hook_timeout),
            config.root,
            engine,
            binder=storage)
        storage.tell_when_bound(pods)  # Pending pods whose claim is bound now get set up
        stack.push_async_callback(pods.close)
        notify("STATUS=restoring pods")
        await pods.restore([config.disk_volumes_dir, config.memory_path])
        csi = None
        if config.csi_endpoint is not None:  # its volumes are in the tree before the mount
            from volfs.csi import CsiVolumes

            memory = config.memory_path
            csi = CsiVolumes(state, fs, nfs_source, config.state_dir / "csi",
                             memory.with_name(f"{memory.name}-csi"), config.root)
            stack.push_async_callback(csi.close)
            await csi.restore()

        nursery = await stack.enter_async_context(trio.open_nursery())
        if not config.keep_connection:
            # A keeper left by a --keep-connection daemon would keep its mount alive but
            # unserved: let it go, so that the mount is stale and is replaced.
            keeper.drop(keeper.socket_path(config.state_dir))
        await nursery.start(functools.partial(
            fs.serve, config.root,
            keep_in=config.state_dir if config.keep_connection else None))
        mounted_at = fs.mounted_at  # containers started before hold a dead mount
        policy = RecoveryPolicy(config.recover_containers)
        pods.mounted(mounted_at, recovers=policy is not RecoveryPolicy.NONE)
        nursery.start_soon(_widen_read_ahead, config.root)
        registry = core_registry(pods, state, started)
        registry.register(PERSISTENT_VOLUMES, VolumeResource(storage, claims.used_bytes))
        registry.register(PERSISTENT_VOLUME_CLAIMS,
                          ClaimResource(storage, claims.used_bytes, pods.claim_users))
        registry.register(STORAGE_CLASSES, ClassResource(storage))
        await nursery.start(storage.run)
        register_workloads(registry, workloads := Workloads(state, pods, storage))
        await nursery.start(workloads.run)  # replicas of RCs and StatefulSets, and GC
        watches = OpenWatches()
        kubeconfig = await _serve_kube_api(nursery, functools.partial(
            create_app, registry, changes=state.next_change, watches=watches), kube_api)
        control = create_app(registry, kubeconfig=lambda: kubeconfig,
                             changes=state.next_change, watches=watches)
        await nursery.start(serve_unix, control, config.socket_path)
        await _serve_docker_plugin(nursery, config, pods, engine, storage)
        if csi is not None:
            await _serve_csi(nursery, config, csi, fs)
        if metrics_sock is not None:
            app = create_metrics_app([volume_gatherer(state, fs), phase_gatherer(state)])
            address = await nursery.start(serve_metrics, app, metrics_sock)
            stack.enter_context(_address_file(config.metrics_address_path, address))
            log.info("metrics on http://%s/metrics", address)
        nursery.start_soon(pods.sweep_containers)
        # After the plugin serves: a plugin volume's container mounts it again as it starts.
        recovery = ContainerRecovery(state, engine, str(config.root), policy,
                                     plugin_driver=config.docker_plugin)
        nursery.start_soon(recovery.run, mounted_at)
        log.info("serving %s (state in %s, control socket %s)", config.root,
                 config.state_dir, config.socket_path)
        # What a client needs is up (the mount, the control socket, the plugin socket):
        # only now may systemd start the units ordered after volfs.
        notify("READY=1", f"STATUS=serving {config.root}")
        await _until_stop_signal()
        watches.close()  # open watches end now, not at the HTTP server's timeout
        nursery.cancel_scope.cancel()
    await _tell_who_lost_volumes(engine, config.root)
    log.info("stopped")


STOP_QUESTION_SECONDS = 2.0  # the longest a stop waits for the engine's answer


async def _tell_who_lost_volumes(engine: DockerRuntime, root: Path) -> None:
    """Warn, naming them, of the engine's running containers that bind-mount paths under
    ``root``: with the mount gone they see ENOTCONN until restarted. Best effort, and
    bounded: without an answer from the engine, only a debug line."""
    users: list[str] | None = None
    reason = f"no answer in {STOP_QUESTION_SECONDS:g} s"
    with trio.move_on_after(STOP_QUESTION_SECONDS):
        try:
            users = await engine.containers_binding(str(root))
        except (RuntimeUnavailable, RuntimeFailed) as exc:
            reason = str(exc)
    if users is None:
        log.debug("cannot ask the Docker engine at %s which containers use %s: %s",
                  engine.host, root, reason)
    elif users:
        log.warning("containers %s bind-mount paths under %s and now see 'Transport "
                    "endpoint is not connected' there; once volfs serves again, run: "
                    "docker restart %s", ", ".join(users), root, " ".join(users))


async def _serve_docker_plugin(nursery: trio.Nursery, config: DaemonConfig,
                               pods: PodManager, engine: DockerRuntime,
                               claims: StorageController) -> None:
    """Serve Docker's volume-plugin protocol on ``<plugin-dir>/<name>.sock``, if asked to.

    The plugin is optional: when its socket cannot be served, one warning says why and
    how to pick another name, and the daemon serves everything else.
    """
    socket_path = config.docker_plugin_socket
    if socket_path is None:
        return
    choose = "choose another name with --docker-plugin NAME ('' serves none)"
    try:
        socket_path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        app = create_plugin_app(DockerVolumes(pods, MountRefs(config.state_dir / REFS_FILE),
                                              engine, claims))
        await nursery.start(serve_unix, app, socket_path)
    except SocketInUse:
        log.warning("Docker volume plugin %s not served: another process serves %s; %s",
                    config.docker_plugin, socket_path, choose)
        return
    except OSError as exc:
        log.warning("Docker volume plugin %s not served: %s: %s; %s", config.docker_plugin,
                    socket_path, exc.strerror or exc, choose)
        return
    log.info("Docker volume plugin %s on %s", config.docker_plugin, socket_path)


async def _serve_csi(nursery: trio.Nursery, config: DaemonConfig, volumes: CsiVolumes,
                     fs: Filesystem) -> None:
    """Serve CSI's gRPC services on ``--csi-endpoint``: optional, as the plugin is (a
    warning says why it is not served, and the daemon serves everything else)."""
    from volfs.csi import Controller, Identity, InFlight, Node, serve_csi

    socket_path = config.csi_endpoint
    assert socket_path is not None
    try:
        socket_path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        _remove_stale_socket(socket_path)
        in_flight = InFlight()
        await nursery.start(functools.partial(
            serve_csi, socket_path, Identity(lambda: fs.mounted),
            Controller(volumes, in_flight), Node(volumes, in_flight, config.csi_node_id)))
    except SocketInUse:
        log.warning("CSI not served: another process serves %s; choose another path with "
                    "--csi-endpoint unix:///PATH", socket_path)
        return
    except OSError as exc:
        log.warning("CSI not served: %s: %s", socket_path, exc.strerror or exc)
        return
    log.info("CSI driver volfs.io on unix://%s", socket_path)


def _remove_stale_socket(path: Path) -> None:
    """Remove a socket no process answers on (left by a daemon that died); SocketInUse
    if one answers; OSError if ``path`` is something else."""
    if not path.exists() and not path.is_symlink():
        return
    if not stat.S_ISSOCK(path.lstat().st_mode):
        raise OSError(errno.EEXIST, "exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except ConnectionRefusedError:
        path.unlink()
        return
    finally:
        probe.close()
    raise SocketInUse(str(path))


async def _until_stop_signal() -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.info("%s: unmounting", signal.Signals(signum).name)
            notify("STOPPING=1", "STATUS=unmounting")
            return


READ_AHEAD_KB = 2048  # scripts/bench nfs: 1 MiB 0.77x nfs-cp, 2 MiB 0.81x, 8 MiB 0.55x


async def _widen_read_ahead(root: Path) -> None:
    """Let the kernel read 2 MiB ahead on the mount (a FUSE mount gets 128 KiB).

    Sequential reads then reach the stores as 1 MiB requests, two at once,
    instead of a 128 KiB round trip at a time: reads from NFS go about twice as
    fast. Done once the mount answers (the kernel sets read-ahead when it meets
    the daemon, undoing an earlier change); nothing changes if the kernel refuses.
    """
    await trio.to_thread.run_sync(os.statvfs, root, abandon_on_cancel=True)
    target = str(root).replace(" ", "\\040")
    with open("/proc/self/mountinfo") as mountinfo:
        devices = [f[2] for f in (line.split() for line in mountinfo) if f[4] == target]
    if not devices:
        return
    try:
        Path(f"/sys/class/bdi/{devices[-1]}/read_ahead_kb").write_text(f"{READ_AHEAD_KB}\n")
    except OSError as exc:
        log.info("read-ahead of %s left at the kernel's default: %s", root, exc)


def _resolved(root: Path, kept: bool) -> Path:
    """``root`` with symlinks resolved. With a kept connection, ``root`` may be a mount
    no daemon serves yet: its last name is read as a link (readlink does not reach the
    filesystem, where stat would wait for an answer only this daemon can give)."""
    if not kept:
        return root.resolve()
    parent = root.absolute().parent.resolve()
    try:
        return (parent / os.readlink(parent / root.name)).resolve()
    except OSError:  # EINVAL: not a link; ENOENT: not there yet
        return parent / root.name


def _raise_fd_limit() -> None:
    """One O_PATH descriptor per inode the kernel knows: allow as many as Linux does."""
    with open("/proc/sys/fs/nr_open") as f:
        most = int(f.read())
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (most, most))
    except (ValueError, OSError):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _make_private_dir(path: Path) -> None:
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    path.mkdir(mode=0o700, exist_ok=True)
    os.chmod(path, 0o700)


@contextmanager
def _exclusive(state_dir: Path) -> Iterator[None]:
    """Hold the state dir's lock: two daemons on one state would corrupt it."""
    fd = os.open(state_dir / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise StartupError(f"another volfs daemon (pid {owner}) is using state dir "
                               f"{state_dir}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


async def _serve_kube_api(nursery: trio.Nursery, app: Callable[[], ASGIApp],
                          listener: tuple[socket.socket, Credentials] | None
                          ) -> dict[str, Any] | None:
    """Serve the app ``app()`` makes on the ``--kube-api`` listener, if any; the
    kubeconfig that reaches it."""
    if listener is None:
        return None
    from volfs.server.kubeapi import serve_kube_api

    kubeconfig: dict[str, Any] = await nursery.start(serve_kube_api, app(), *listener)
    log.info("Kubernetes API on %s", kubeconfig["clusters"][0]["cluster"]["server"])
    return kubeconfig


@contextmanager
def _kube_api_listener(config: DaemonConfig
                       ) -> Iterator[tuple[socket.socket, Credentials] | None]:
    """The bound ``--kube-api`` socket and its credentials, or None; before the mount.

    The listener is optional: when it cannot be bound (or its credentials cannot be
    read), one warning says why and how to fix it, and the daemon serves everything else.
    """
    if config.kube_api is None:
        yield None
        return
    from volfs.server.kubeapi import load_or_create_credentials

    try:
        credentials = load_or_create_credentials(config.state_dir)
    except (OSError, ValueError) as exc:
        log.warning("--kube-api %s not served: credentials in %s: %s; fix or remove the "
                    "kube-api.* files there (new ones are made)",
                    _shown(*config.kube_api), config.state_dir, exc)
        yield None
        return
    with _optional_listener("--kube-api", config.kube_api, "'volfs kubeconfig'") as sock:
        yield None if sock is None else (sock, credentials)


@contextmanager
def _metrics_listener(config: DaemonConfig) -> Iterator[socket.socket | None]:
    """The bound ``--metrics`` socket, or None: optional, as the ``--kube-api`` one is."""
    if config.metrics is None:
        yield None
        return
    with _optional_listener("--metrics", config.metrics,
                            str(config.metrics_address_path)) as sock:
        yield sock


@contextmanager
def _optional_listener(flag: str, address: tuple[str, int], tells: str
                       ) -> Iterator[socket.socket | None]:
    """A loopback socket bound for ``flag``, or None when the port cannot be had: a
    warning says why and how to choose another, and the daemon serves everything else.
    A non-loopback address stops the start (it is the user's error, not the machine's)."""
    from volfs.server.kubeapi import bind_loopback, describe_bind_error

    host, port = address
    try:
        sock = bind_loopback(host, port)
    except ValueError as exc:
        raise StartupError(f"{flag}: {exc}") from None
    except OSError as exc:
        log.warning("%s %s not served: %s; choose another port with %s %s:PORT (PORT 0 "
                    "picks a free one; %s tells which)", flag, _shown(host, port),
                    describe_bind_error(exc), flag, "[::1]" if ":" in host else host, tells)
        yield None
        return
    try:
        yield sock
    finally:
        sock.close()


def _shown(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@contextmanager
def _address_file(path: Path, address: str) -> Iterator[None]:
    """``HOST:PORT`` in ``path`` while it is served (port 0 picks one: scrapers read it)."""
    staging = path.with_name(f".{path.name}.tmp")
    staging.write_text(f"{address}\n")
    os.chmod(staging, 0o644)
    os.replace(staging, path)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


@contextmanager
def _opened(path: Path) -> Iterator[StateDB]:
    db = StateDB(path)
    try:
        yield db
    finally:
        db.close()
