"""After a daemon restart: restart the containers that still hold the dead mount.

A container bind-mounts a path under the root; when the daemon stops or dies its
FUSE mount goes, and the container keeps the dead one (every call there answers
ENOTCONN, "Transport endpoint is not connected") until it is restarted: a restart
binds the path again, now on the new mount. A container that last started before
this daemon's mount was up necessarily holds a dead mount (or, after a clean stop,
the bare directory under it): no marker is needed, and a clean stop with no
container attached leaves nothing to find.

Which stranded containers are restarted is the policy (``--recover-containers``):

    managed  the containers of ``volfs run`` pods (by their labels) and those using
             this daemon's Docker volume-plugin volumes (the default)
    all      these, and any other container binding a path under the root
    none     none: each is named in a warning and an event, as before

A pod's containers are stopped together and started again in spec order, as kubelet
restarts a pod's containers; pods are restarted in parallel, with a short grace
(see RECOVERY_GRACE_SECONDS) and a bound on the whole (RECOVERY_DEADLINE). Every
action is a log line and an event on the pod whose volume the container binds.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Protocol

import trio

from volfs.lifecycle.pod_containers import LOST_REASON
from volfs.lifecycle.pod_status import POD, Object
from volfs.runtime import (
    LABEL_CONTAINER,
    LABEL_OWNER,
    LABEL_UID,
    BoundContainer,
    RuntimeFailed,
    RuntimeUnavailable,
    runs_containers,
)
from volfs.state import AsyncStateDB
from volfs.state.events import NORMAL, WARNING, EventRecorder

log = logging.getLogger(__name__)

# Its volumes are dead, so nothing a container would save in a long grace period can
# reach them, and every second of grace is a second more of outage: a process that
# handles SIGTERM stops at once, one that ignores it is killed after this.
RECOVERY_GRACE_SECONDS = 1.0
# The most the whole recovery may take: a hung engine must not keep it going for ever.
RECOVERY_DEADLINE = 60.0


class RecoveryPolicy(enum.StrEnum):
    MANAGED = "managed"
    ALL = "all"
    NONE = "none"


DOCKER_VOLUME_ANNOTATION = "volfs.io/docker-volume"
"""On the pod backing a Docker volume of the volume plugin (volfs.server.docker_plugin):
the volume's name, by which a container's mount names it."""

DOCKER_VOLUMES = "docker-volumes"
"""The namespace of the pods backing the volume plugin's volumes."""

RUN_POD, PLUGIN, OTHER = "volfs run pod", "volume-plugin volume", "bind mount"


@dataclass(frozen=True)
class Stranded:
    """A container holding a dead mount: what made it (RUN_POD, PLUGIN, OTHER) and the
    uid of the pod whose volume it binds ("" when it binds no pod's volume)."""

    container: BoundContainer
    kind: str
    pod_uid: str


class Engine(Protocol):
    """The container engine, as recovery sees it (DockerRuntime)."""

    async def bound_containers(self, root: str, driver: str) -> list[BoundContainer]: ...

    async def restart_containers(self, ids: list[str], grace_seconds: float) -> None: ...


def find_stranded(containers: Iterable[BoundContainer], root: str, mounted_at: float,
                  plugin_driver: str, volume_pods: Mapping[str, str]) -> list[Stranded]:
    """The containers that last started before the mount was up (at ``mounted_at``).

    ``volume_pods``: the uid of the pod backing each of the plugin's volumes, by name.
    """
    found = []
    for container in containers:
        if container.started is None or container.started >= mounted_at:
            continue
        if container.labels.get(LABEL_OWNER) == root:
            found.append(Stranded(container, RUN_POD, container.labels.get(LABEL_UID, "")))
            continue
        volumes = [m.volume for m in container.mounts
                   if plugin_driver and m.driver == plugin_driver]
        uids = [volume_pods.get(v, "") for v in volumes]
        uids += [pod_uid_of(m.source, root) for m in container.mounts]
        found.append(Stranded(container, PLUGIN if volumes else OTHER,
                              next(filter(None, uids), "")))
    return found


def volume_pods(pods: Iterable[Object]) -> dict[str, str]:
    """The uid of the pod backing each of the volume plugin's volumes, by volume name."""
    found = {}
    for obj in pods:
        volume = (obj["metadata"].get("annotations") or {}).get(DOCKER_VOLUME_ANNOTATION)
        if volume:
            found[str(volume)] = obj["metadata"]["uid"]
    return found


def pod_uid_of(source: str, root: str) -> str:
    """The pod uid of a path ``<root>/pods/<uid>/...``, else ""."""
    try:
        parts = PurePosixPath(source).relative_to(root).parts
    except ValueError:
        return ""
    return parts[1] if len(parts) >= 2 and parts[0] == "pods" else ""


def chosen_by(policy: RecoveryPolicy, stranded: Stranded) -> bool:
    if policy is RecoveryPolicy.NONE:
        return False
    return policy is RecoveryPolicy.ALL or stranded.kind in (RUN_POD, PLUGIN)


def restart_groups(stranded: Iterable[Stranded], pods: Mapping[str, Object]
                   ) -> list[list[Stranded]]:
    """The containers by pod, each pod's in its spec order (others by name); a container
    that binds no pod's volume is a group of its own."""
    groups: dict[str, list[Stranded]] = {}
    for one in stranded:
        groups.setdefault(one.pod_uid or f"container:{one.container.id}", []).append(one)
    ordered = []
    for key, members in sorted(groups.items()):
        spec = [c.get("name") for c in ((pods.get(key) or {}).get("spec") or {})
                .get("containers") or []]
        ordered.append(sorted(members, key=lambda s: (_spec_index(s, spec), s.container.name)))
    return ordered


def _spec_index(stranded: Stranded, spec: list[str]) -> int:
    name = stranded.container.labels.get(LABEL_CONTAINER) if stranded.kind == RUN_POD else None
    return spec.index(name) if name in spec else len(spec)


class ContainerRecovery:
    """Finds and restarts, by ``policy``, the containers stranded on a dead mount.

    Example::

        recovery = ContainerRecovery(db, engine, "/var/lib/volfs", RecoveryPolicy.MANAGED,
                                     plugin_driver="volfs")
        await recovery.run(mounted_at=time.time())
    """

    def __init__(self, db: AsyncStateDB, engine: Engine, root: str, policy: RecoveryPolicy,
                 plugin_driver: str, *, grace_seconds: float = RECOVERY_GRACE_SECONDS,
                 deadline: float = RECOVERY_DEADLINE) -> None:
        self._db = db
        self._events = EventRecorder(db)
        self._engine = engine
        self._root = root
        self._policy = policy
        self._plugin_driver = plugin_driver
        self._grace = grace_seconds
        self._deadline = deadline

    async def run(self, mounted_at: float) -> int:
        """Restart what the policy picks; how many containers were restarted. An
        engine that does not answer is a warning, and any other failure an error: the
        daemon serves on either way."""
        try:
            return await self._recover(mounted_at)
        except Exception as exc:  # recovery is a service to containers, not the daemon's job
            log.error("containers holding volumes under %s not recovered: %s: %s",
                      self._root, type(exc).__name__, exc)
            log.debug("traceback of the failure above", exc_info=True)
            return 0

    async def _recover(self, mounted_at: float) -> int:
        stored = await self._db.list(POD)
        try:
            containers = await self._engine.bound_containers(self._root, self._plugin_driver)
        except (RuntimeUnavailable, RuntimeFailed) as exc:
            # A warning where containers may be stranded; a daemon used without Docker
            # (no run pod, no plugin volume) is not warned at every start.
            level = logging.WARNING if self._expects_containers(stored) else logging.DEBUG
            log.log(level, "containers holding volumes under %s were not looked for: %s",
                    self._root, exc)
            return 0
        pods = {obj["metadata"]["uid"]: obj for obj in stored}
        stranded = find_stranded(containers, self._root, mounted_at, self._plugin_driver,
                                 volume_pods(stored))
        # A volfs run container whose pod is gone is the sweep's to remove, not to restart.
        stranded = [s for s in stranded if s.kind != RUN_POD or s.pod_uid in pods]
        chosen = [s for s in stranded if chosen_by(self._policy, s)]
        await self._report_left([s for s in stranded if s not in chosen], pods)
        if not chosen:
            return 0
        began = time.monotonic()
        restarted = await self._restart(restart_groups(chosen, pods), pods)
        log.info("restarted %d of %d containers that held the mount of the daemon that "
                 "stopped, %.1f s after the mount came up (%.1f s restarting)", restarted,
                 len(chosen), time.time() - mounted_at, time.monotonic() - began)
        return restarted

    def _expects_containers(self, stored: list[Object]) -> bool:
        """Whether containers may use the volumes: pods volfs runs, plugin volumes, or
        with policy ``all``, anyone's."""
        return self._policy is RecoveryPolicy.ALL or any(
            runs_containers(obj) or obj["metadata"].get("namespace") == DOCKER_VOLUMES
            for obj in stored)

    async def _restart(self, groups: list[list[Stranded]], pods: Mapping[str, Object]) -> int:
        done: list[Stranded] = []
        with trio.move_on_after(self._deadline) as scope:
            async with trio.open_nursery() as nursery:
                for group in groups:
                    nursery.start_soon(self._restart_group, group, pods, done)
        if scope.cancelled_caught:
            late = [s for group in groups for s in group if s not in done]
            for one in late:
                await self._tell(one, pods, WARNING, "Failed",
                                 f"not restarted within {self._deadline:g} s: run docker "
                                 f"restart {one.container.name}")
        return len(done)

    async def _restart_group(self, group: list[Stranded], pods: Mapping[str, Object],
                             done: list[Stranded]) -> None:
        names = ", ".join(s.container.name for s in group)
        await self._tell(group[0], pods, WARNING, LOST_REASON,
                         f"containers {names} hold the volume mount of a volfs daemon that "
                         f"stopped: restarting them (--recover-containers={self._policy})")
        try:
            await self._engine.restart_containers([s.container.id for s in group], self._grace)
        except (RuntimeUnavailable, RuntimeFailed) as exc:
            for one in group:
                await self._tell(one, pods, WARNING, "Failed",
                                 f"container {one.container.name} not restarted: {exc}; run "
                                 f"docker restart {one.container.name}")
            return
        for one in group:
            done.append(one)
            await self._tell(one, pods, NORMAL, "Restarted",
                             f"restarted container {one.container.name} ({one.kind}): it held "
                             "the mount of the volfs daemon that stopped; it binds the new "
                             "mount now")

    async def _report_left(self, left: list[Stranded], pods: Mapping[str, Object]) -> None:
        for one in left:
            await self._tell(one, pods, WARNING, LOST_REASON,
                             f"container {one.container.name} ({one.kind}) holds the volume "
                             "mount of a volfs daemon that stopped and sees 'Transport "
                             "endpoint is not connected' there; not restarted "
                             f"(--recover-containers={self._policy}): run docker restart "
                             f"{one.container.name}")

    async def _tell(self, one: Stranded, pods: Mapping[str, Object], type_: str, reason: str,
                    message: str) -> None:
        """A log line, and an event on the pod whose volume the container binds."""
        pod = pods.get(one.pod_uid)
        where = (f"pod {pod['metadata'].get('namespace')}/{pod['metadata']['name']}: "
                 if pod else "")
        level = logging.WARNING if type_ == WARNING else logging.INFO
        log.log(level, "%s%s", where, message)
        if pod is not None:
            await self._events.record(pod, type_, reason, message)
