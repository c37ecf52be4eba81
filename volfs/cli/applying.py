"""``volfs apply``, ``volfs delete -f`` and ``apply --wait``: objects of every kind
sent to the daemon the way kubectl sends them.

``apply`` creates an object (POST); when it exists (409 AlreadyExists) it reads the
stored one and compares: what the manifest says (labels, annotations, and ``spec``, or
a StorageClass's top-level fields) laid over the stored object changes nothing ->
``unchanged``; else the result is PUT with the stored ``resourceVersion`` ->
``configured``. Fields the manifest leaves out (a claim's ``volumeName``, a volume's
``claimRef``, annotations the daemon adds) are kept, as kubectl keeps fields others
manage. A pod's spec is compared whole: the API refuses changes to it beyond images.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from volfs.cli.client import ApiError, Client, ClientError
from volfs.cli.kinds import (
    EVENT,
    PERSISTENT_VOLUME,
    PERSISTENT_VOLUME_CLAIM,
    POD,
    REPLICATION_CONTROLLER,
    STATEFUL_SET,
    STORAGE_CLASS,
    Kind,
)
from volfs.cli.progress import ProgressView, wait_showing
from volfs.runtime import DEFAULT_GRACE_SECONDS, RUN_ANNOTATION, runs_containers

EXIT_FAILED = 1
EXIT_REFUSED = 2
DEFAULT_NAMESPACE = "default"
UPDATE_ATTEMPTS = 3  # a PUT that loses a race with another writer is tried again
POLL_INTERVAL = 0.2  # the longest sleep between two looks at the daemon in --wait

# Created in this order, deleted in the reverse: what an object refers to exists first.
_APPLY_ORDER = (STORAGE_CLASS, PERSISTENT_VOLUME, PERSISTENT_VOLUME_CLAIM, POD,
                REPLICATION_CONTROLLER, STATEFUL_SET)
_IGNORED = ("apiVersion", "kind", "metadata", "status")

Object = dict[str, Any]


class Failure(Exception):
    """An expected failure: print ``error: <message>`` and exit with ``code``."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Target:
    """One object in the daemon: its kind, namespace (None when cluster-scoped), name."""

    kind: Kind
    namespace: str | None
    name: str

    @classmethod
    def of(cls, kind: Kind, obj: Object, namespace: str = DEFAULT_NAMESPACE) -> Target:
        """Where ``obj`` (a manifest's object) lives: its own namespace, else ``namespace``."""
        meta = obj.get("metadata") or {}
        ns = (meta.get("namespace") or namespace) if kind.namespaced else None
        return cls(kind, ns, str(meta.get("name") or ""))

    @property
    def label(self) -> str:
        """``persistentvolumeclaim/nfs``: how apply names it."""
        return f"{self.kind.qualified}/{self.name}"

    @property
    def quoted(self) -> str:
        """``persistentvolumeclaim "nfs"``: how delete and errors name it."""
        return f'{self.kind.qualified} "{self.name}"'


def in_apply_order(items: Iterable[Any], kind_of: Callable[[Any], Kind]) -> list[Any]:
    """``items`` sorted for creation: classes, volumes, claims, pods, then workloads
    (stable)."""
    rank = {kind: i for i, kind in enumerate(_APPLY_ORDER)}
    return sorted(items, key=lambda item: rank.get(kind_of(item), len(rank)))


def in_delete_order(items: Iterable[Any], kind_of: Callable[[Any], Kind]) -> list[Any]:
    """``items`` sorted for deletion: workloads, pods, claims, volumes, then classes
    (stable)."""
    rank = {kind: -i for i, kind in enumerate(_APPLY_ORDER)}
    return sorted(items, key=lambda item: rank.get(kind_of(item), 1))


def apply_object(client: Client, kind: Kind, obj: Object, run: bool = False) -> str:
    """Create ``obj`` or bring the stored one in line with it; the line to print.

    Raises:
        Failure: with the message to print after the file name, and the exit code
            (2 when the daemon refused the object as invalid, 1 otherwise).
    """
    target = Target.of(kind, obj)
    try:
        created = client.create_object(kind, target.namespace, obj)
    except ApiError as exc:
        if exc.code == 409 and exc.reason == "AlreadyExists":
            return _reconcile(client, target, obj, run)
        raise _failure(target, exc) from exc
    if run:
        statuses = (created.get("status") or {}).get("containerStatuses") or []
        running = sum(1 for s in statuses if "running" in (s.get("state") or {}))
        return f"{target.label} created ({running}/{len(statuses)} containers running)"
    return f"{target.label} created"


def _reconcile(client: Client, target: Target, applied: Object, run: bool) -> str:
    for attempt in range(1, UPDATE_ATTEMPTS + 1):
        stored = client.get_object(target.kind, target.namespace, target.name)
        if target.kind is POD:
            _check_run(target, stored, run)
        desired = desired_object(target.kind, stored, applied)
        if desired == stored:
            return f"{target.label} unchanged"
        body = {k: v for k, v in desired.items() if k != "status"}
        try:
            client.replace_object(target.kind, target.namespace, body)
        except ApiError as exc:
            if exc.code == 409 and exc.reason == "Conflict" and attempt < UPDATE_ATTEMPTS:
                continue  # changed since we read it: look again
            spec_changed = stored.get("spec") != desired.get("spec")
            if target.kind is POD and spec_changed and exc.code in (400, 405, 422):
                raise Failure(f'pod "{target.name}": spec is immutable once created; '
                              "delete the pod first", EXIT_REFUSED) from exc
            raise _failure(target, exc) from exc
        return f"{target.label} configured"
    raise AssertionError("unreachable")


def _check_run(target: Target, stored: Object, run: bool) -> None:
    annotations = (stored.get("metadata") or {}).get("annotations") or {}
    if run and annotations.get(RUN_ANNOTATION) != "true":
        raise Failure(f'pod "{target.name}" already exists and its containers are not run '
                      "by volfs; delete the pod first", EXIT_REFUSED)


def desired_object(kind: Kind, stored: Object, applied: Object) -> Object:
    """The stored object as ``applied`` wants it (equal to ``stored`` when unchanged).

    Labels and annotations of ``applied`` are laid over the stored ones; every other
    top-level field (``spec``; a StorageClass's ``provisioner``, ``parameters``, ...)
    is merged in, objects key by key and lists and values replaced. A pod's ``spec``
    is taken whole from ``applied``.

    >>> stored = {"metadata": {"name": "nfs", "labels": {"a": "1"}},
    ...           "spec": {"volumeName": "pv-1", "accessModes": ["ReadWriteOnce"]}}
    >>> applied = {"metadata": {"name": "nfs"}, "spec": {"accessModes": ["ReadWriteOnce"]}}
    >>> desired_object(PERSISTENT_VOLUME_CLAIM, stored, applied) == stored
    True
    """
    desired = copy.deepcopy(stored)
    applied = json.loads(json.dumps(applied))  # the form the daemon stores: plain JSON
    meta = desired.setdefault("metadata", {})
    given = applied.get("metadata") or {}
    for key in ("labels", "annotations"):
        if given.get(key):
            meta[key] = {**(meta.get(key) or {}), **given[key]}
    for key, value in applied.items():
        if key in _IGNORED:
            continue
        if kind is POD and key == "spec":
            desired[key] = value
        else:
            desired[key] = _merged(desired.get(key), value)
    return desired


def _merged(stored: Any, applied: Any) -> Any:
    if isinstance(stored, dict) and isinstance(applied, dict):
        return {**stored, **{k: _merged(stored.get(k), v) for k, v in applied.items()}}
    return applied


def delete_object(client: Client, target: Target, grace_seconds: int | None = None,
                  say: Callable[[str], None] | None = None,
                  view: ProgressView | None = None) -> tuple[str, list[str]]:
    """Delete one object; the line to print and the daemon's warnings.

    ``grace_seconds`` is how long a pod's containers get to stop (None: the pod's
    terminationGracePeriodSeconds). Before a delete that may wait that long, ``say``
    is told so (see :func:`stop_notice`). With a ``view``, a delete that waits for long
    work shows it while it runs, then how it ended: a pod's volumes being wiped, or the
    reclaim of a deleted claim's volume (see :func:`watched_work`).
    """
    found = None
    if target.kind in (POD, PERSISTENT_VOLUME_CLAIM) and (say or view):
        try:
            found = client.get_object(target.kind, target.namespace, target.name)
        except ApiError:
            found = None  # the delete itself says what is wrong
    notice = stop_notice(found, grace_seconds) if found and target.kind == POD else None
    if say is not None and notice:
        say(notice)
    work = watched_work(client, target, found) if view is not None and found else None
    if view is not None and work is not None:
        warnings = _delete_showing(client, target, grace_seconds, view, work)
    else:
        _, warnings = client.delete_object(target.kind, target.namespace, target.name,
                                           grace_seconds)
    return f"{target.quoted} deleted", warnings


@dataclass(frozen=True)
class Work:
    """Where a delete's long work shows: the object whose ``status.operation`` counts it
    (``subject`` names it in each line), and the reasons of the events that end it."""

    target: Target
    uid: object
    subject: str
    closing: tuple[str, ...]


def watched_work(client: Client, target: Target, found: Object) -> Work | None:
    """What deleting ``found`` waits for: a pod's own wipe, or the reclaim (recycle or
    delete) of a claim's bound volume; None for a claim bound to nothing."""
    if target.kind == POD:
        uid = (found.get("metadata") or {}).get("uid")
        return Work(target, uid, f"pod {target.namespace}/{target.name}", ("Deleted",))
    volume_name = (found.get("spec") or {}).get("volumeName")
    if not volume_name:
        return None
    try:
        volume = client.get_object(PERSISTENT_VOLUME, None, str(volume_name))
    except ApiError:
        return None
    return Work(Target(PERSISTENT_VOLUME, None, str(volume_name)),
                (volume.get("metadata") or {}).get("uid"),
                f"persistentvolume {volume_name}", ("VolumeRecycled", "Deleted"))


def _delete_showing(client: Client, target: Target, grace_seconds: int | None,
                    view: ProgressView, work: Work) -> list[str]:
    """Delete ``target``, showing ``work`` meanwhile (read over a second connection),
    then the lines its closing events give."""
    watched = work.target
    with Client(client.socket_path) as looker:
        def look() -> Object | None:
            try:
                return looker.get_object(watched.kind, watched.namespace, watched.name)
            except ClientError:
                return None  # gone: the work is over

        _, warnings = wait_showing(
            lambda: client.delete_object(target.kind, target.namespace, target.name,
                                         grace_seconds),
            look, view, work.subject)
        for message in _closing_messages(looker, work):
            view.say(work.subject, message)
    return warnings


def _closing_messages(client: Client, work: Work) -> list[str]:
    """The messages of the events that ended the work (``Deleted volume scratch: 20,020
    entries in 0.4s``); none when the daemon serves no events."""
    watched = work.target
    try:
        answer = client.list_objects(EVENT, watched.namespace,
                                     fields=f"involvedObject.name={watched.name}")
    except ClientError:
        return []
    messages = []
    for event in answer.get("items") or []:
        involved = event.get("involvedObject") or {}
        if (event.get("reason") in work.closing and involved.get("kind") == watched.kind.kind
                and involved.get("uid") == work.uid):
            messages.append(str(event.get("message") or ""))
    return messages


def stop_notice(pod: Object, grace_seconds: int | None) -> str | None:
    """What deleting ``pod`` may wait for, or None: a pod whose containers volfs runs,
    with one running, waits up to its grace period for them to stop (a container
    that ignores SIGTERM is killed only then).

    >>> pod = {"metadata": {"name": "web", "annotations": {"volfs.io/run": "true"}},
    ...        "spec": {}, "status": {"containerStatuses": [{"state": {"running": {}}}]}}
    >>> stop_notice(pod, None)[:61]
    'pod "web": waiting up to 30s for its containers to stop (its '
    >>> stop_notice(pod, 1)
    'pod "web": waiting up to 1s for its containers to stop'
    """
    if not runs_containers(pod):
        return None
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    if not any("running" in (s.get("state") or {}) for s in statuses if isinstance(s, dict)):
        return None
    name = (pod.get("metadata") or {}).get("name")
    if grace_seconds is not None:
        return (f'pod "{name}": waiting up to {grace_seconds}s for its containers to stop'
                if grace_seconds > 0 else None)
    grace = (pod.get("spec") or {}).get("terminationGracePeriodSeconds")
    seconds = DEFAULT_GRACE_SECONDS if grace is None else grace
    if seconds <= 0:
        return None
    return (f'pod "{name}": waiting up to {seconds:g}s for its containers to stop (its '
            "terminationGracePeriodSeconds; --grace-period SECONDS or --now shortens it)")


def _failure(target: Target, exc: ApiError) -> Failure:
    if exc.code in (400, 422):
        return Failure(str(exc), EXIT_REFUSED)
    return Failure(f"{target.quoted}: {exc}", EXIT_FAILED)


# -- apply --wait ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Waiting:
    """Where an object stands: ``ready``, or never going to be (``final``), and why."""

    ready: bool
    phase: str
    reason: str = ""
    message: str = ""
    final: bool = False

    def describe(self) -> str:
        """``Pending (ClaimNotBound: persistentvolumeclaim "nfs" is not bound)``."""
        why = ": ".join(part for part in (self.reason, self.message) if part)
        return f"{self.phase} ({why})" if why else self.phase


def readiness(kind: Kind, obj: Object) -> Waiting:
    """A pod is ready when Running, a claim when Bound.

    A pod that Succeeded or Failed, or a claim that is Lost, never will be. The reason
    is the first condition that is not True (a pod whose claim is not bound yet says
    so there), else the status's own ``reason``/``message``.
    """
    status = obj.get("status") or {}
    phase = str(status.get("phase") or "Unknown")
    reason, message = str(status.get("reason") or ""), str(status.get("message") or "")
    for condition in status.get("conditions") or []:
        if isinstance(condition, dict) and condition.get("status") != "True" and (
                condition.get("reason") or condition.get("message")):
            reason = str(condition.get("reason") or reason)
            message = str(condition.get("message") or message)
            break
    if kind is POD:
        return Waiting(phase == "Running", phase, reason, message,
                       final=phase in ("Succeeded", "Failed"))
    return Waiting(phase == "Bound", phase, reason, message, final=phase == "Lost")


def wait_ready(client: Client, targets: Sequence[Target], timeout: float,
               sleep: Callable[[float], None] = time.sleep,
               clock: Callable[[], float] = time.monotonic) -> list[str]:
    """Poll the daemon until every pod of ``targets`` is Running and every claim Bound.

    Returns one line per object that did not get there (empty when all did): gone,
    in a phase it cannot leave, or still waiting when ``timeout`` seconds are up.
    Sleeps start at 20 ms and grow to at most POLL_INTERVAL.
    """
    deadline = clock() + timeout
    pending = [t for t in targets if t.kind in (POD, PERSISTENT_VOLUME_CLAIM)]
    problems: list[str] = []
    delay = 0.02
    while True:
        states: dict[Target, Waiting] = {}
        for target in pending:
            try:
                obj = client.get_object(target.kind, target.namespace, target.name)
            except ApiError as exc:
                if exc.code != 404:
                    raise
                problems.append(f"{target.label}: {exc}")
                continue
            state = readiness(target.kind, obj)
            if state.final:
                problems.append(f"{target.label} is {_with_event(client, target, state)}; "
                                f"it will not become {_goal(target)}")
            elif not state.ready:
                states[target] = state
        pending = list(states)
        if not pending:
            return problems
        left = deadline - clock()
        if left <= 0:
            seconds = f"{timeout:g}s"
            return problems + [
                f"timed out after {seconds} waiting for {t.label} to be {_goal(t)}: "
                f"{_with_event(client, t, state)}" for t, state in states.items()]
        sleep(min(delay, left))
        delay = min(delay * 2, POLL_INTERVAL)


def _goal(target: Target) -> str:
    return "Running" if target.kind is POD else "Bound"


def _with_event(client: Client, target: Target, state: Waiting) -> str:
    """``state`` described; when it gives no reason, the newest Warning event's."""
    if state.reason or state.message:
        return state.describe()
    try:
        events = client.list_objects(
            EVENT, target.namespace or DEFAULT_NAMESPACE,
            fields=f"involvedObject.name={target.name}").get("items") or []
    except ApiError:
        return state.describe()
    mine = [e for e in events
            if (e.get("involvedObject") or {}).get("kind") in (target.kind.kind, "", None)]
    if not mine:
        return state.describe()
    latest = sorted(mine, key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))[-1]
    return Waiting(False, state.phase, str(latest.get("reason") or ""),
                   str(latest.get("message") or "")).describe()
