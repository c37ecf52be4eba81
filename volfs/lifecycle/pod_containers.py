"""The containers of pods volfs runs (annotated ``volfs.io/run: "true"``), through a
ContainerRuntime: started on the pod's published volumes, stopped and removed
before its volumes go, reported in ``status.containerStatuses``, and swept when a
pod is gone but its containers are not."""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack
from dataclasses import dataclass

import trio

from volfs.api import Pod
from volfs.api.errors import Invalid, RequestError, SetupFailed
from volfs.lifecycle.pod_status import POD, Object
from volfs.logs import fields, object_fields
from volfs.runtime import (
    DEFAULT_GRACE_SECONDS,
    ContainerRuntime,
    ContainerState,
    RunRefused,
    RuntimeFailed,
    RuntimeUnavailable,
    engine_name,
    plan_pod,
    pod_phase,
    prepare_binds,
    runs_containers,
)

log = logging.getLogger(__name__)

NOT_RUN_MESSAGE = ('containers not run by volfs (use volfs run, or annotate the pod '
                   'volfs.io/run: "true")')
"""``status.message`` of a pod whose containers volfs does not run: kubectl describe
shows it, and its READY column (``-``, from the absent ``containerStatuses``) says
there is nothing to be ready, rather than ``0/1``, which reads as a broken container."""


LOST_REASON = "VolumeMountLost"
"""``status.reason`` of a pod with a container that holds the mount of a daemon that
stopped (see volfs.lifecycle.recovery)."""


class ContainersNotRemoved(RequestError):
    """The engine refused to remove a pod's containers: the pod and its volumes stay."""


class PodContainers:
    """The container side of the pod manager; ``runtime`` None runs no containers."""

    def __init__(self, runtime: ContainerRuntime | None) -> None:
        self._runtime = runtime
        # The engine restarts containers itself; a restart is logged when a status shows
        # a count above the last one seen: (pod uid, container) -> restart count.
        self._restarts: dict[tuple[str, str], int] = {}
        self._mounted_at: float | None = None
        self._recovers = False

    def mounted(self, at: float, recovers: bool) -> None:
        """The mount is up since ``at`` (seconds since the epoch): a container started
        before holds a dead mount. ``recovers``: the daemon restarts such containers
        itself (--recover-containers), which the pod's status then says."""
        self._mounted_at = at
        self._recovers = recovers

    async def start(self, obj: Object, pod: Pod, mounts: list[Object],
                    undo: AsyncExitStack) -> None:
        """Start the pod's containers on ``mounts`` (its status's); undone by ``undo``."""
        name = pod.metadata.name
        if self._runtime is None:
            raise SetupFailed(f"pod {name}: this volfs daemon runs no containers")
        uid = obj["metadata"]["uid"]
        try:
            plan = plan_pod(pod, uid, mounts)
        except RunRefused as exc:
            raise Invalid(POD, name, [(exc.field, str(exc))]) from exc
        undo.push_async_callback(self._remove_quietly, uid)
        try:
            await trio.to_thread.run_sync(prepare_binds, plan)
            await self._runtime.start_pod(plan)
        except (RuntimeUnavailable, RuntimeFailed) as exc:
            raise SetupFailed(f"containers not started: {exc}") from exc
        key = f"{plan.namespace}/{plan.name}"
        for container in plan.containers:
            log.info("pod %s: container %s started", key, container.name,
                     extra=fields(pod=key, uid=uid, container=container.name,
                                  image=container.image))

    async def remove(self, obj: Object, grace_seconds: float | None = None) -> list[str]:
        """Stop and remove a run pod's containers; the warnings to report.

        Each container gets ``grace_seconds`` between SIGTERM and SIGKILL, by default
        the pod's ``terminationGracePeriodSeconds``. An unreachable engine is a warning
        (the delete goes on; a later sweep removes what is left), an engine that
        refuses stops the delete.
        """
        if self._runtime is None or not runs_containers(obj):
            return []
        if grace_seconds is None:
            grace_seconds = grace_period(obj)
        about = object_fields(obj)
        self._restarts = {k: n for k, n in self._restarts.items() if k[0] != about["uid"]}
        try:
            await self._runtime.remove_pod(obj["metadata"]["uid"], grace_seconds)
        except RuntimeUnavailable as exc:
            log.warning("pod %s: containers not removed: %s", about["pod"], exc,
                        extra=fields(**about))
            return [f"containers not removed: {exc}"]
        except RuntimeFailed as exc:
            raise ContainersNotRemoved(
                f'pods "{obj["metadata"]["name"]}": containers not removed, so the pod '
                f"and its volumes stay: {exc}") from exc
        log.info("pod %s: containers stopped and removed", about["pod"], extra=fields(**about))
        return []

    async def sweep(self, known: set[str]) -> int:
        """Remove the containers of pods not in ``known`` (uids); how many pods'.
        Best effort: an unreachable engine is left for the next sweep."""
        if self._runtime is None:
            return 0
        try:
            orphans = set(await self._runtime.pod_states(None)) - known
            for uid in sorted(orphans):
                log.info("removing the containers of pod %s: the pod is gone", uid,
                         extra=fields(uid=uid))
                await self._runtime.remove_pod(uid, 0)
        except (RuntimeUnavailable, RuntimeFailed) as exc:
            log.info("containers of deleted pods not swept: %s", exc)
            return 0
        return len(orphans)

    async def with_status(self, objs: list[Object]) -> list[Object]:
        """Objects with ``status.containerStatuses`` and phase for pods volfs runs; the
        others without statuses, saying so in ``status.message``."""
        run = [obj for obj in objs if runs_containers(obj)]
        states: dict[str, list[ContainerState]] = {}
        unknown = ""
        if run and self._runtime is not None:
            try:
                states = await self._runtime.pod_states([o["metadata"]["uid"] for o in run])
            except (RuntimeUnavailable, RuntimeFailed) as exc:
                unknown = str(exc)
            self._log_restarts(run, states)
        lost = Lost(self._mounted_at, self._recovers)
        return [_container_status(obj, states, unknown, lost) if runs_containers(obj)
                else _not_run(obj) for obj in objs]

    def _log_restarts(self, objs: list[Object], states: dict[str, list[ContainerState]]
                      ) -> None:
        for obj in objs:
            about = object_fields(obj)
            for state in states.get(obj["metadata"]["uid"], []):
                key = (about["uid"], state.name)
                seen = self._restarts.get(key, 0)
                if state.restart_count > seen:
                    log.info("pod %s: container %s restarted (%d restarts)", about["pod"],
                             state.name, state.restart_count,
                             extra=fields(**about, container=state.name,
                                          restarts=state.restart_count))
                self._restarts[key] = max(seen, state.restart_count)

    async def _remove_quietly(self, uid: str) -> None:
        assert self._runtime is not None
        try:
            await self._runtime.remove_pod(uid, 0)
        except (RuntimeUnavailable, RuntimeFailed) as exc:  # sweep retries
            log.error("pod %s: containers not removed during rollback: %s", uid, exc,
                      extra=fields(uid=uid))


def _not_run(obj: Object) -> Object:
    return dict(obj, status=dict(obj.get("status") or {}, message=NOT_RUN_MESSAGE))


def grace_period(obj: Object) -> float:
    """The pod's ``terminationGracePeriodSeconds``: Kubernetes' 30 when unset."""
    grace = (obj.get("spec") or {}).get("terminationGracePeriodSeconds")
    return DEFAULT_GRACE_SECONDS if grace is None else float(grace)


@dataclass(frozen=True)
class Lost:
    """How to tell a container that holds a dead mount: it last started before the
    mount came up (``mounted_at``; None: not mounted yet, none can be told)."""

    mounted_at: float | None
    recovers: bool

    def stranded(self, state: ContainerState) -> bool:
        return (self.mounted_at is not None and state.state == "running"
                and state.started is not None and state.started < self.mounted_at)

    def message(self, obj: Object, names: list[str]) -> str:
        meta = obj["metadata"]
        engine = " ".join(engine_name(meta["name"], n, meta["uid"]) for n in names)
        then = ("volfs is restarting them (--recover-containers)" if self.recovers else
                f"restart them: docker restart {engine} (volfs serve "
                "--recover-containers=managed does this when it starts)")
        return (f"containers {', '.join(names)} hold the volume mount of a volfs daemon that "
                f"stopped and see 'Transport endpoint is not connected' there; {then}")


def _container_status(obj: Object, states: dict[str, list[ContainerState]],
                      unknown: str, lost: Lost) -> Object:
    """``obj`` with its containers' states, in spec order, and the phase they imply."""
    spec_names = [c.get("name") for c in (obj.get("spec") or {}).get("containers") or []]
    found = {s.name: s for s in states.get(obj["metadata"]["uid"], [])}
    statuses = []
    for name in spec_names:
        state = found.get(name)
        if state is None:
            state = ContainerState(name=str(name), state="waiting",
                                   reason="ContainerStatusUnknown",
                                   message=unknown or "no such container on the engine")
        statuses.append(state)
    status = dict(obj.get("status") or {}, containerStatuses=[s.to_k8s() for s in statuses],
                  phase="Unknown" if unknown else pod_phase(statuses, len(spec_names)))
    stranded = [s.name for s in statuses if lost.stranded(s)]
    if stranded:
        _mark_lost(status, lost.message(obj, stranded), set(stranded))
    return dict(obj, status=status)


def _mark_lost(status: Object, message: str, names: set[str]) -> None:
    """Not ready, saying why: ``reason`` is what ``get pods`` shows as STATUS (as kubectl
    shows a pod's NodeLost), ``message`` what to do; the containers run, unready."""
    for entry in status["containerStatuses"]:
        if entry["name"] in names:
            entry["ready"] = False
    condition = {"type": "Ready", "status": "False", "reason": LOST_REASON,
                 "message": message}
    status.update(reason=LOST_REASON, message=message,
                  conditions=[*(status.get("conditions") or []), condition])
