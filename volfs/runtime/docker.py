"""The Docker Engine side: a pod's containers through the Engine API (``docker`` SDK).

Every SDK call blocks, so each runs in a worker thread (``trio.to_thread``) under a
CapacityLimiter; the event loop, which also serves FUSE, never waits on the engine.
The client connects lazily, at the first call, and negotiates the API version the
engine speaks; a daemon without a reachable engine starts and serves as usual. The SDK
itself is imported then too (see ``_load_sdk``).
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import math
import os
import re
import threading
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from volfs.runtime.base import (
    LABEL_CONTAINER,
    LABEL_OWNER,
    LABEL_UID,
    BoundContainer,
    BoundMount,
    ContainerPlan,
    ContainerState,
    PodPlan,
    RuntimeFailed,
    RuntimeUnavailable,
    container_name,
)

if TYPE_CHECKING:  # imported at the first engine call: _load_sdk
    import docker
    import requests
    from docker.errors import APIError, DockerException, ImageNotFound, NotFound
    from docker.models.images import Image
    from docker.types import Mount

DEFAULT_DOCKER_HOST = "unix:///run/docker.sock"
ENGINE_TIMEOUT = 30.0  # seconds for one Engine API call (a stop adds its grace period)

T = TypeVar("T")


def default_docker_host() -> str:
    """``$DOCKER_HOST``, else the engine's usual socket."""
    return os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST


class DockerRuntime:
    """A ContainerRuntime backed by a Docker engine (see volfs.runtime.base).

    ``owner`` (the volfs root) is put on every container as ``io.volfs.root``;
    only containers carrying it are ever listed, stopped or removed.

    Example::

        runtime = DockerRuntime("unix:///run/docker.sock", owner="/var/lib/volfs")
        await runtime.start_pod(plan)
        states = await runtime.pod_states([plan.uid])
    """

    def __init__(self, host: str, owner: str, *, timeout: float = ENGINE_TIMEOUT) -> None:
        self.host = host
        self.owner = owner
        self._timeout = timeout
        self._client: docker.DockerClient | None = None
        self._client_lock = threading.Lock()
        self._limiter = trio.CapacityLimiter(16)

    # -- ContainerRuntime ------------------------------------------------------------

    async def start_pod(self, plan: PodPlan) -> None:
        await self._run(self._start_pod, plan)

    async def remove_pod(self, uid: str, grace_seconds: float) -> int:
        ids = await self._run(self._container_ids, uid)
        failures: list[Exception] = []

        async def remove(container_id: str) -> None:
            try:
                await self._run(self._stop_and_remove, container_id, grace_seconds)
            except (RuntimeFailed, RuntimeUnavailable) as exc:
                failures.append(exc)

        async with trio.open_nursery() as nursery:  # stopped together, as kubelet does
            for container_id in ids:
                nursery.start_soon(remove, container_id)
        if failures:
            raise failures[0]
        return len(ids)

    async def pod_states(self, uids: Collection[str] | None) -> dict[str, list[ContainerState]]:
        return await self._run(self._pod_states, None if uids is None else set(uids))

    async def volume_users(self, volume: str) -> list[str]:
        """The names of the engine's containers, running or not, that use a named volume."""
        return await self._run(self._volume_users, volume)

    async def containers_binding(self, root: str) -> list[str]:
        """The names of the engine's running containers with a mount whose source lies
        under ``root`` (volfs's or anyone's: labels are not asked).

        Cancelling abandons the call: its worker thread finishes on its own.
        """
        return await trio.to_thread.run_sync(self._call, self._containers_binding, root,
                                             limiter=self._limiter, abandon_on_cancel=True)

    async def bound_containers(self, root: str, driver: str) -> list[BoundContainer]:
        """The engine's running (or restarting) containers with a mount whose source
        lies under ``root``, or a volume of volume plugin ``driver`` ("": none), whoever
        made them. Cancelling abandons the call."""
        return await self._run_abandoning(self._bound_containers, root, driver)

    async def restart_containers(self, ids: list[str], grace_seconds: float) -> None:
        """Stop the containers together (SIGTERM, SIGKILL after ``grace_seconds``), then
        start them one by one in the order given, as kubelet restarts a pod's containers.
        Cancelling abandons the calls under way (each finishes on its own).

        Raises:
            RuntimeUnavailable, RuntimeFailed: the first stop or start that failed (no
                container is started when a stop failed).
        """
        failures: list[Exception] = []

        async def stop(container_id: str) -> None:
            try:
                await self._run_abandoning(self._stop, container_id, grace_seconds)
            except (RuntimeFailed, RuntimeUnavailable) as exc:
                failures.append(exc)

        async with trio.open_nursery() as nursery:
            for container_id in ids:
                nursery.start_soon(stop, container_id)
        if failures:
            raise failures[0]
        for container_id in ids:
            await self._run_abandoning(self._start, container_id)

    # -- in worker threads -----------------------------------------------------------------

    def _start_pod(self, client: docker.DockerClient, plan: PodPlan) -> None:
        for container in plan.containers:
            image = self._ensure_image(client, container)
            if not (container.command or container.args or _image_command(image)):
                # Else the engine's create fails with "No command specified", naming nothing.
                raise RuntimeFailed(
                    f"container {container.name}: image {container.image} has no command "
                    "(no CMD or ENTRYPOINT) and the container gives none: add command: "
                    "to the container in the manifest, or use an image with a CMD")
        created = []
        try:
            for container in plan.containers:
                created.append(client.containers.create(**self._create_args(plan, container)))
            for made in created:
                made.start()
        except BaseException:
            for made in created:
                with contextlib.suppress(DockerException):  # rollback asks again, by label
                    made.remove(force=True)
            raise

    def _create_args(self, plan: PodPlan, container: ContainerPlan) -> dict[str, Any]:
        return {
            "image": container.image,
            "name": container_name(plan, container.name),
            "entrypoint": None if container.command is None else list(container.command),
            "command": None if container.args is None else list(container.args),
            "environment": [f"{name}={value}" for name, value in container.env],
            "working_dir": container.working_dir,
            "user": container.user,
            "tty": container.tty,
            "stdin_open": container.stdin,
            "hostname": plan.name[:63].rstrip(".-") or "pod",
            "labels": plan.labels(container.name, self.owner),
            "network_mode": "none",
            "restart_policy": {"Name": plan.restart_policy},
            "mounts": [Mount(target=bind.target, source=bind.source, type="bind",
                             read_only=bind.read_only) for bind in container.binds],
            "detach": True,
        }

    def _ensure_image(self, client: docker.DockerClient, container: ContainerPlan) -> Image:
        """The container's image; pulled if it is not here, unless its imagePullPolicy
        is Never.

        A present image is used as it is, whatever the policy: volfs is often run
        where no registry is reachable.
        """
        try:
            return client.images.get(container.image)
        except ImageNotFound:
            pass
        where = f"container {container.name}: image {container.image}"
        if container.pull_never:
            raise RuntimeFailed(f"{where} is not present (imagePullPolicy: Never)")
        try:
            client.images.pull(container.image)
        except APIError as exc:
            raise RuntimeFailed(f"{where} is not present and could not be pulled: "
                                f"{_explain(exc)}") from exc
        return client.images.get(container.image)

    def _container_ids(self, client: docker.DockerClient, uid: str) -> list[str]:
        found = client.api.containers(all=True, filters={"label": [
            f"{LABEL_OWNER}={self.owner}", f"{LABEL_UID}={uid}"]})
        return [c["Id"] for c in found]

    def _stop_and_remove(self, client: docker.DockerClient, container_id: str,
                         grace_seconds: float) -> None:
        try:
            # stop, not kill: a stop also keeps the restart policy from starting it again
            client.api.stop(container_id, timeout=max(0, math.ceil(grace_seconds)))
            client.api.remove_container(container_id, force=True)
        except NotFound:
            pass  # already gone

    def _stop(self, client: docker.DockerClient, container_id: str,
              grace_seconds: float) -> None:
        client.api.stop(container_id, timeout=max(0, math.ceil(grace_seconds)))

    def _start(self, client: docker.DockerClient, container_id: str) -> None:
        client.api.start(container_id)

    def _bound_containers(self, client: docker.DockerClient, root: str, driver: str
                          ) -> list[BoundContainer]:
        def ours(mount: dict[str, Any]) -> bool:
            # A plugin's volume has no Source: the engine asks the plugin at each start.
            return (_under(str(mount.get("Source") or ""), root)
                    or bool(driver) and mount.get("Driver") == driver)

        found = []
        for summary in client.api.containers():  # running, paused and restarting ones
            if not any(ours(m) for m in summary.get("Mounts") or []):
                continue
            try:
                info = client.api.inspect_container(summary["Id"])
            except NotFound:
                continue  # removed meanwhile
            state = info.get("State") or {}
            mounts = tuple(BoundMount(source=str(m.get("Source") or ""),
                                      volume=str(m.get("Name") or "") if m.get("Type") == "volume"
                                      else "", driver=str(m.get("Driver") or ""))
                           for m in info.get("Mounts") or [] if ours(m))
            found.append(BoundContainer(
                id=str(info.get("Id") or summary["Id"]),
                name=str(info.get("Name") or summary["Id"]).lstrip("/"),
                labels=dict((info.get("Config") or {}).get("Labels") or {}),
                started=_epoch(state.get("StartedAt")), mounts=mounts))
        return found

    def _volume_users(self, client: docker.DockerClient, volume: str) -> list[str]:
        found = client.api.containers(all=True, filters={"volume": volume})
        return sorted(str(name).lstrip("/") for c in found for name in c.get("Names", [])[:1])

    def _containers_binding(self, client: docker.DockerClient, root: str) -> list[str]:
        names: set[str] = set()
        for summary in client.api.containers():  # running (and paused) ones only
            sources = [str(m.get("Source") or "") for m in summary.get("Mounts") or []]
            if any(_under(s, root) for s in sources):
                names.update(str(n).lstrip("/") for n in summary.get("Names", [])[:1])
        return sorted(names)

    def _pod_states(self, client: docker.DockerClient, uids: set[str] | None
                    ) -> dict[str, list[ContainerState]]:
        labels = [f"{LABEL_OWNER}={self.owner}"]
        if uids is not None and len(uids) == 1:
            labels.append(f"{LABEL_UID}={next(iter(uids))}")
        states: dict[str, list[ContainerState]] = {}
        for summary in client.api.containers(all=True, filters={"label": labels}):
            found = summary.get("Labels") or {}
            uid = found.get(LABEL_UID)
            if uid is None or (uids is not None and uid not in uids):
                continue
            try:
                info = client.api.inspect_container(summary["Id"])
            except NotFound:
                continue  # removed meanwhile
            states.setdefault(uid, []).append(_state(found.get(LABEL_CONTAINER, ""), info))
        return states

    # -- plumbing --------------------------------------------------------------------------

    async def _run(self, call: Callable[..., T], *args: Any) -> T:
        return await trio.to_thread.run_sync(self._call, call, *args, limiter=self._limiter)

    async def _run_abandoning(self, call: Callable[..., T], *args: Any) -> T:
        return await trio.to_thread.run_sync(self._call, call, *args, limiter=self._limiter,
                                             abandon_on_cancel=True)

    def _call(self, call: Callable[..., T], *args: Any) -> T:
        """``call(client, *args)`` with the SDK's exceptions as this layer's."""
        client = self._docker()
        try:
            return call(client, *args)
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
            with self._client_lock:
                self._client = None
            raise RuntimeUnavailable(self._unreachable(exc)) from exc
        except APIError as exc:
            raise RuntimeFailed(_explain(exc)) from exc
        except DockerException as exc:
            raise RuntimeFailed(_one_line(str(exc))) from exc

    def _docker(self) -> docker.DockerClient:
        if self._client is None:  # a client made is kept: its calls say what fails
            self._check_socket()
        _load_sdk()
        with self._client_lock:
            if self._client is None:
                try:
                    self._client = docker.DockerClient(base_url=self.host, version="auto",
                                                       timeout=self._timeout)
                except DockerException as exc:
                    raise RuntimeUnavailable(self._unreachable(exc)) from exc
            return self._client

    def _check_socket(self) -> None:
        """RuntimeUnavailable, before the SDK is imported, where the engine's unix socket
        does not exist: a host without Docker then pays nothing for it. The first engine
        call of a start (the sweep, the recovery) runs beside the start's first list,
        and the SDK's import (~0.1 s of CPU) would slow that list."""
        path = self.host.removeprefix("unix://") if self.host.startswith("unix://") else None
        if path and not os.path.exists(path):
            raise RuntimeUnavailable(self._unreachable_because(os.strerror(errno.ENOENT)))

    def _unreachable(self, exc: Exception) -> str:
        return self._unreachable_because(_reason(exc))

    def _unreachable_because(self, reason: str) -> str:
        return (f"no Docker engine answers at {self.host} ({reason}); start dockerd, "
                "or point 'volfs serve --docker-host' at one")


def _load_sdk() -> None:
    """Import the Docker SDK (and requests) into this module's names, once.

    Importing them takes 0.1-0.15 s, which the daemon's start would spend before its
    mount. Every use of these names is on a path that gets its client from
    ``DockerRuntime._docker`` first (an ``except`` clause reads its name only when an
    exception reaches it), so the names exist before any use; the first call runs in a
    worker thread, after the mount.
    """
    if "docker" in globals():
        return
    import docker
    import requests
    from docker.errors import APIError, DockerException, ImageNotFound, NotFound
    from docker.models.images import Image
    from docker.types import Mount

    globals().update(docker=docker, requests=requests, APIError=APIError,
                     DockerException=DockerException, ImageNotFound=ImageNotFound,
                     NotFound=NotFound, Image=Image, Mount=Mount)


_OS_ERROR = re.compile(r"\w+Error\(\d+, '([^']+)'\)")


def _reason(exc: Exception) -> str:
    """The OS's words for why a connection failed, from however deep the SDK wrapped them."""
    text = str(exc)
    match = _OS_ERROR.search(text)
    if match:
        return match.group(1)
    if "timed out" in text.lower() or isinstance(exc, requests.exceptions.Timeout):
        return "timed out"
    return _one_line(text)[:200]


def _image_command(image: Image) -> list[str]:
    """What the image runs when a container names nothing: its ENTRYPOINT and CMD."""
    config = image.attrs.get("Config") or {}
    return [*(config.get("Entrypoint") or []), *(config.get("Cmd") or [])]


def _explain(exc: APIError) -> str:
    return _one_line(str(exc.explanation or exc))


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _time(value: object) -> str | None:
    """The engine's RFC 3339 nanosecond time as Kubernetes writes it (seconds, ``Z``)."""
    if not isinstance(value, str) or not value or value.startswith("0001-"):
        return None
    return value[:19] + "Z"


def _under(source: str, root: str) -> bool:
    return source == root or source.startswith(root.rstrip("/") + "/")


def _epoch(value: object) -> float | None:
    """The engine's RFC 3339 time (nanoseconds, ``Z``) in seconds since the epoch, to
    the microsecond; None for the engine's zero time or anything unreadable."""
    if not isinstance(value, str) or not value or value.startswith("0001-"):
        return None
    whole, _, rest = value.rstrip("Z").partition(".")
    fraction = "".join(c for c in rest if c.isdigit())[:6]
    try:
        when = datetime.datetime.fromisoformat(whole).replace(tzinfo=datetime.UTC)
    except ValueError:
        return None
    return when.timestamp() + (int(fraction) / 10 ** len(fraction) if fraction else 0.0)


def _state(name: str, info: dict[str, Any]) -> ContainerState:
    """One inspected container in Kubernetes' terms."""
    state = info.get("State") or {}
    status = state.get("Status")
    common: dict[str, Any] = {
        "name": name, "restart_count": int(info.get("RestartCount") or 0),
        "container_id": info.get("Id", ""), "image": (info.get("Config") or {}).get("Image", ""),
        "image_id": info.get("Image", ""), "started": _epoch(state.get("StartedAt")),
    }
    if status in ("running", "paused"):
        return ContainerState(state="running", started_at=_time(state.get("StartedAt")), **common)
    if status == "restarting":
        return ContainerState(state="waiting", reason="CrashLoopBackOff", **common)
    if status == "created":
        return ContainerState(state="waiting", reason="ContainerCreating", **common)
    code = int(state.get("ExitCode") or 0)
    reason = "OOMKilled" if state.get("OOMKilled") else ("Completed" if code == 0 else "Error")
    return ContainerState(state="terminated", reason=reason, exit_code=code,
                          message=_one_line(str(state.get("Error") or "")),
                          started_at=_time(state.get("StartedAt")),
                          finished_at=_time(state.get("FinishedAt")), **common)
