"""Watches: a list that stays open and tells each change as it is committed.

``GET .../{resource}?watch=1`` answers, instead of a list, a stream of
``{"type": "ADDED"|"MODIFIED"|"DELETED", "object": {...}}`` lines, as the API server
does (``kubectl get -w``, ``kubectl wait``). volfs keeps no history of changes: a
watch lists the kind, then lists again whenever the state database commits a write,
and tells what differs by ``metadata.resourceVersion`` (one counter for every object,
as etcd's revision). So:

- ``resourceVersion`` unset or ``"0"``: every current object first, as ADDED;
- ``resourceVersion=N`` (from a list): the objects changed since N, as ADDED (volfs
  cannot tell new from changed there; clients treat both as "this is the object now");
  an object deleted between that list and the watch's start is not told;
- a DELETED event carries the object's last state marked as being deleted, as the API
  server sends it: ``metadata.deletionTimestamp`` set (so kubectl and ``volfs get -w``
  print ``Terminating`` where a status is shown, never the state it had while it
  lived), and a pod's containers no longer ready (volfs stops them before it deletes
  the pod);
- the stream ends after ``timeoutSeconds`` (default 30 minutes), and when the
  client goes away.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import trio

from volfs.api.times import timestamp_now

Object = dict[str, Any]
Key = tuple[str, str]  # (namespace, name)

DEFAULT_TIMEOUT_SECONDS = 1800.0
RELIST_SECONDS = 5.0
"""A watch lists again at least this often, should a change reach it some other way."""


class OpenWatches:
    """The watches being served, so that a daemon that stops ends them at once: the
    HTTP server would otherwise give each open stream its whole graceful timeout."""

    def __init__(self) -> None:
        self._scopes: set[trio.CancelScope] = set()
        self._closed = False

    @contextmanager
    def serving(self) -> Iterator[None]:
        scope = trio.CancelScope()
        if self._closed:
            scope.cancel()
        self._scopes.add(scope)
        try:
            with scope:
                yield
        finally:
            self._scopes.discard(scope)

    def close(self) -> None:
        self._closed = True
        for scope in self._scopes:
            scope.cancel()


def version_of(obj: Object) -> int:
    version = (obj.get("metadata") or {}).get("resourceVersion")
    return int(version) if isinstance(version, str) and version.isdigit() else 0


def _key(obj: Object) -> Key:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def deleted(obj: Object, when: str) -> Object:
    """``obj``'s last state as a DELETED event tells it, marked deleted at ``when``."""
    gone = copy.deepcopy(obj)
    meta = gone.get("metadata")
    if not isinstance(meta, dict):
        meta = gone["metadata"] = {}
    meta.setdefault("deletionTimestamp", when)
    statuses = (gone.get("status") or {}).get("containerStatuses")
    for status in statuses if isinstance(statuses, list) else []:
        if isinstance(status, dict):
            status.update(ready=False, started=False)
    return gone


def changes(before: dict[Key, Object], after: dict[Key, Object],
            when: str = "") -> list[Object]:
    """The events that take a watcher from ``before`` to ``after``, oldest change first;
    a deletion is dated ``when`` (now, by default)."""
    events = [{"type": "DELETED", "object": deleted(obj, when or timestamp_now())}
              for key, obj in before.items() if key not in after]
    for key, obj in sorted(after.items(), key=lambda item: version_of(item[1])):
        if key not in before:
            events.append({"type": "ADDED", "object": obj})
        elif version_of(obj) != version_of(before[key]):
            events.append({"type": "MODIFIED", "object": obj})
    return events


def since(resource_version: str, current: dict[Key, Object]) -> dict[Key, Object]:
    """What a client that listed at ``resource_version`` is taken to know already."""
    if resource_version in ("", "0") or not resource_version.isdigit():
        return {}
    return {key: obj for key, obj in current.items()
            if version_of(obj) <= int(resource_version)}


async def watch(list_objects: Callable[[], Awaitable[list[Object]]],
                next_change: Callable[[], trio.Event], resource_version: str,
                ) -> AsyncIterator[Object]:
    """Events without end (the caller bounds the time): see the module's text."""
    known: dict[Key, Object] | None = None
    while True:
        change = next_change()  # before listing: a write during the list wakes us again
        current = {_key(obj): obj for obj in await list_objects()}
        if known is None:
            known = since(resource_version, current)
        for event in changes(known, current):
            yield event
        known = current
        with trio.move_on_after(RELIST_SECONDS):
            await change.wait()
