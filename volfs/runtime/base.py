"""What the lifecycle asks of a container runtime, and the plan it hands over.

The lifecycle turns a pod into a :class:`PodPlan` (pure: :func:`plan_pod`), makes
the subPath directories its binds need (:func:`prepare_binds`, blocking I/O
through the volfs mount) and asks a :class:`ContainerRuntime` to start it. The
runtime labels every container with the pod's identity (``io.volfs.pod.uid``
...) and the root of the daemon that owns it (``io.volfs.root``), so it can find
a pod's containers again by asking the engine, after a daemon restart too.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from volfs.api import Container, Pod

RUN_ANNOTATION = "volfs.io/run"
"""A pod annotated ``volfs.io/run: "true"`` has its containers run by volfs."""

LABEL_UID = "io.volfs.pod.uid"
LABEL_NAME = "io.volfs.pod.name"
LABEL_NAMESPACE = "io.volfs.pod.namespace"
LABEL_CONTAINER = "io.volfs.container.name"
LABEL_OWNER = "io.volfs.root"
"""The volfs root whose binds the container uses: several daemons may share an engine."""

DEFAULT_GRACE_SECONDS = 30.0  # Kubernetes' terminationGracePeriodSeconds default

_RESTART_POLICIES = {"Always": "always", "OnFailure": "on-failure", "Never": "no"}


class RuntimeUnavailable(Exception):
    """No container engine answers; ``str()`` is one line."""


class RuntimeFailed(Exception):
    """The engine answered but refused or failed; ``str()`` is one line."""


class RunRefused(Exception):
    """A pod volfs cannot run (a field it does not support); ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Bind:
    """One volumeMount as the runtime binds it: ``source`` on the host, ``target`` inside.

    ``volume_path`` is the volume's directory; ``sub_path`` (may be "") lies in it.
    """

    volume_path: str
    sub_path: str
    target: str
    read_only: bool

    @property
    def source(self) -> str:
        return os.path.join(self.volume_path, self.sub_path) if self.sub_path else self.volume_path


@dataclass(frozen=True)
class ContainerPlan:
    name: str
    image: str
    command: tuple[str, ...] | None  # the image's ENTRYPOINT when None
    args: tuple[str, ...] | None  # the image's CMD when None (and command is None)
    env: tuple[tuple[str, str], ...]
    working_dir: str | None
    user: str | None  # "uid" or "uid:gid"
    tty: bool
    stdin: bool
    pull_never: bool
    binds: tuple[Bind, ...]


@dataclass(frozen=True)
class PodPlan:
    uid: str
    namespace: str
    name: str
    containers: tuple[ContainerPlan, ...]
    restart_policy: str = "always"  # the engine's word: always, on-failure, no
    grace_seconds: float = DEFAULT_GRACE_SECONDS

    def labels(self, container: str, owner: str) -> dict[str, str]:
        return {LABEL_UID: self.uid, LABEL_NAME: self.name, LABEL_NAMESPACE: self.namespace,
                LABEL_CONTAINER: container, LABEL_OWNER: owner}


@dataclass(frozen=True)
class ContainerState:
    """A container as the engine reports it, in Kubernetes' terms.

    ``state`` is "running", "waiting" or "terminated"; ``reason`` is Kubernetes'
    (``ContainerCreating``, ``Completed``, ``Error``, ``OOMKilled``, ...).
    """

    name: str
    state: str
    reason: str = ""
    message: str = ""
    exit_code: int | None = None
    started_at: str | None = None
    finished_at: str | None = None
    restart_count: int = 0
    container_id: str = ""
    image: str = ""
    image_id: str = ""
    started: float | None = None  # when it last started, in seconds since the epoch

    def to_k8s(self) -> dict[str, Any]:
        """One entry of ``status.containerStatuses``."""
        detail: dict[str, Any] = {}
        if self.state == "running":
            detail = _without_none({"startedAt": self.started_at})
        elif self.state == "terminated":
            detail = _without_none({
                "exitCode": self.exit_code, "reason": self.reason or None,
                "message": self.message or None, "startedAt": self.started_at,
                "finishedAt": self.finished_at,
                "containerID": f"docker://{self.container_id}" if self.container_id else None})
        else:
            detail = _without_none({"reason": self.reason or None,
                                    "message": self.message or None})
        status: dict[str, Any] = {
            "name": self.name, "ready": self.state == "running",
            "started": self.state == "running", "restartCount": self.restart_count,
            "image": self.image, "imageID": self.image_id,
            "state": {self.state: detail},
        }
        if self.container_id:
            status["containerID"] = f"docker://{self.container_id}"
        return status


@dataclass(frozen=True)
class BoundMount:
    """One mount of an engine's container: its source on the host, and for a named
    volume its name and driver (both "" for a plain bind)."""

    source: str
    volume: str = ""
    driver: str = ""


@dataclass(frozen=True)
class BoundContainer:
    """A container of the engine, running or being restarted by the engine, with
    mounts whose sources lie under a root (``mounts`` holds those only)."""

    id: str
    name: str
    labels: Mapping[str, str]
    started: float | None  # when it last started, in seconds since the epoch
    mounts: tuple[BoundMount, ...]


class ContainerRuntime(Protocol):
    """Runs a pod's containers on a container engine. Every method may raise
    RuntimeUnavailable (no engine answers) or RuntimeFailed (it refused)."""

    async def start_pod(self, plan: PodPlan) -> None:
        """Create and start every container of ``plan``; all or nothing (what was
        created is removed again before the error is raised)."""

    async def remove_pod(self, uid: str, grace_seconds: float) -> int:
        """Stop (SIGTERM, then SIGKILL after ``grace_seconds``) and remove every
        container of pod ``uid``; returns how many there were. Safe to repeat."""

    async def pod_states(self, uids: Collection[str] | None) -> dict[str, list[ContainerState]]:
        """The containers of the given pods (all of this daemon's when None), by pod uid."""


# -- plans ------------------------------------------------------------------------------

def runs_containers(obj: Pod | Mapping[str, Any]) -> bool:
    """Whether a pod (typed, or stored as JSON) asks volfs to run its containers."""
    if isinstance(obj, Pod):
        annotations: Mapping[str, Any] = obj.metadata.annotations
    else:
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
    return str(annotations.get(RUN_ANNOTATION, "")).lower() == "true"


def check_runnable(pod: Pod) -> list[tuple[str, str]]:
    """``(field, message)`` for each part of ``pod`` volfs cannot run; none: runnable."""
    causes = []
    if pod.spec.init_containers:
        causes.append(("spec.initContainers", "volfs run does not run init containers"))
    for index, container in enumerate(pod.spec.containers):
        where = f"spec.containers[{index}]"
        if not container.image:
            causes.append((f"{where}.image", "Required value: volfs run needs an image"))
        if container.env_from:
            causes.append((f"{where}.envFrom", "volfs run does not support envFrom"))
        for e_index, entry in enumerate(container.env or []):
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                causes.append((f"{where}.env[{e_index}].name", "Required value"))
            elif entry.get("valueFrom") is not None:
                causes.append((f"{where}.env[{e_index}].valueFrom",
                               "volfs run does not support valueFrom"))
        try:
            _user(pod, container)
        except RunRefused as exc:
            causes.append((f"{where}.{exc.field}", str(exc)))
    return causes


def plan_pod(pod: Pod, uid: str, mounts: Iterable[Mapping[str, Any]]) -> PodPlan:
    """The plan for running ``pod`` (already checked by :func:`check_runnable`).

    ``mounts`` are the lifecycle's ``status.mounts`` entries: ``{container, name,
    mountPath, subPath, path, readOnly}``.
    """
    binds: dict[str, list[Bind]] = {}
    for mount in mounts:
        if not mount.get("path"):
            raise RunRefused("spec.volumes", f"volume {mount.get('name')} has no path")
        binds.setdefault(mount["container"], []).append(Bind(
            volume_path=str(mount["path"]), sub_path=mount.get("subPath") or "",
            target=str(mount["mountPath"]), read_only=bool(mount.get("readOnly"))))
    containers = []
    for container in pod.spec.containers:
        env = _env(container)
        values = dict(env)
        containers.append(ContainerPlan(
            name=container.name,
            image=container.image or "",
            command=_expanded(container.command, values),
            args=_expanded(container.args, values),
            env=env,
            working_dir=container.working_dir or None,
            user=_user(pod, container),
            tty=bool(container.tty),
            stdin=bool(container.stdin),
            pull_never=container.image_pull_policy == "Never",
            binds=tuple(binds.get(container.name, [])),
        ))
    grace = pod.spec.termination_grace_period_seconds
    return PodPlan(
        uid=uid, namespace=pod.metadata.namespace, name=pod.metadata.name,
        containers=tuple(containers),
        restart_policy=_RESTART_POLICIES.get(pod.spec.restart_policy or "Always", "always"),
        grace_seconds=DEFAULT_GRACE_SECONDS if grace is None else float(grace),
    )


def container_name(plan: PodPlan, container: str) -> str:
    """The engine's name for a container: ``volfs_<pod>_<container>_<uid8>``."""
    return engine_name(plan.name, container, plan.uid)


def engine_name(pod: str, container: str, uid: str) -> str:
    """The engine's name for container ``container`` of pod ``pod`` (uid ``uid``)."""
    return f"volfs_{pod}_{container}_{uid.replace('-', '')[:8]}"


def pod_phase(states: list[ContainerState], expected: int) -> str:
    """Kubernetes' pod phase from its containers' states."""
    if len(states) < expected or any(s.state == "waiting" for s in states):
        return "Pending"
    if all(s.state == "terminated" for s in states):
        return "Succeeded" if all(s.exit_code == 0 for s in states) else "Failed"
    return "Running"


# -- binds ------------------------------------------------------------------------------

def prepare_binds(plan: PodPlan) -> None:
    """Make each missing subPath directory (with its volume root's mode) and check that
    every bind source stays inside its volume once symlinks are resolved.

    Blocking: runs through the volfs mount, so call it from a worker thread.

    Raises:
        RuntimeFailed: a subPath that leads out of its volume or cannot be made.
    """
    for container in plan.containers:
        for bind in container.binds:
            if bind.sub_path:
                _make_sub_path(container.name, bind)


def _make_sub_path(container: str, bind: Bind) -> None:
    """Component by component: each one that exists is resolved and must stay inside the
    volume before anything is made below it (a symlink never leads a mkdir out)."""
    where = f"container {container}: subPath {bind.sub_path}"
    root = os.path.realpath(bind.volume_path)
    current = root
    try:
        mode = os.stat(root).st_mode & 0o7777
        for part in Path(bind.sub_path).parts:
            candidate = os.path.join(current, part)
            if not os.path.lexists(candidate):
                os.mkdir(candidate, mode)
                os.chmod(candidate, mode)
            current = os.path.realpath(candidate)
            if current != root and not current.startswith(root + "/"):
                raise RuntimeFailed(f"{where}: leads out of its volume (to {current})")
    except OSError as exc:
        raise RuntimeFailed(f"{where}: {exc.strerror or exc}") from exc


# -- helpers ----------------------------------------------------------------------------

def _env(container: Container) -> tuple[tuple[str, str], ...]:
    """Name/value pairs in order; a value may use ``$(NAME)`` of those before it."""
    values: dict[str, str] = {}
    pairs = []
    for entry in container.env or []:
        value = expand(str(entry.get("value") or ""), values)
        values[entry["name"]] = value
        pairs.append((entry["name"], value))
    return tuple(pairs)


def _expanded(words: list[str] | None, values: Mapping[str, str]) -> tuple[str, ...] | None:
    return None if words is None else tuple(expand(word, values) for word in words)


_REFERENCE = re.compile(r"\$\$|\$\(([^)]*)\)")


def expand(text: str, values: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: defined names are replaced, ``$$`` is ``$``,
    anything else is left as written.

    >>> expand("$(A)-$(B)-$$(A)", {"A": "x"})
    'x-$(B)-$(A)'
    """

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return values.get(name, match.group(0))

    return _REFERENCE.sub(replace, text)


def _user(pod: Pod, container: Container) -> str | None:
    """``runAsUser[:runAsGroup]`` from the container's securityContext, else the pod's."""
    found: dict[str, Any] = {}
    for where, context in (("securityContext", pod.spec.security_context),
                           ("securityContext", container.security_context)):
        if not isinstance(context, dict):
            continue
        for key in ("runAsUser", "runAsGroup"):
            value = context.get(key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise RunRefused(f"{where}.{key}", f"must be a non-negative integer: {value!r}")
            found[key] = value
    if "runAsUser" not in found:
        if "runAsGroup" in found:  # the image's user would be needed: not guessed
            raise RunRefused("securityContext.runAsGroup",
                             "volfs run needs runAsUser with runAsGroup")
        return None
    user = str(found["runAsUser"])
    return f"{user}:{found['runAsGroup']}" if "runAsGroup" in found else user


def _without_none(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}

