"""Events: what happened to an object, as kubelet reports it (``kubectl describe`` shows them).

Each event is a v1 ``Event`` in the state database (kind ``"Event"``, in the
involved object's namespace), the way the API server stores them, and the control
API serves them at ``/api/v1/namespaces/{ns}/events``. Reasons are kubelet's:

    Normal   Created       the pod's volumes are set up and the pod is stored
    Normal   Killing       the pod is being deleted; its volumes are torn down
    Normal   Deleting      a volume's data is being wiped (an EmptyDir; a PV's storage)
    Normal   Deleted       ... and is gone: how many entries, in how long
    Normal   Recycling     a PV is being emptied for its next claim (VolumeRecycled: done)
    Warning  FailedMount   a volume could not be set up (at create, or after a restart)
    Warning  FailedPreStopHook   a delete hook failed (the delete went on)

Like the API server (``--event-ttl``), events are kept for an hour after they were
last seen. Recording is best effort: a failure to record is logged, never raised, so
an event can never fail the operation it reports.
"""

from __future__ import annotations

import datetime
import logging
import socket
import time
import uuid
import weakref
from typing import Any

from volfs.api.times import parse_timestamp, timestamp_now
from volfs.logs import fields, object_fields
from volfs.state import AsyncStateDB

log = logging.getLogger(__name__)
# Every event is also a log line, with its object's fields: the log then tells what
# `volfs describe` tells. At INFO whatever its type: a Warning event is about a user's
# object (a volume that cannot be set up), not about the daemon's health.
event_log = logging.getLogger("volfs.events")

EVENT = "Event"
NORMAL, WARNING = "Normal", "Warning"
COMPONENT = "volfs"
TTL = datetime.timedelta(hours=1)
# Expired events are looked for at most this often (seconds), not at every event.
PRUNE_INTERVAL = 60.0

_last_pruned: weakref.WeakKeyDictionary[AsyncStateDB, float] = weakref.WeakKeyDictionary()


class EventRecorder:
    """Records events in one state database: what the controllers and the lifecycle
    are handed, so that what they report and where it goes stay apart."""

    def __init__(self, db: AsyncStateDB) -> None:
        self._db = db

    async def record(self, involved_object: dict[str, Any], type_: str, reason: str,
                     message: str) -> None:
        """Store an Event (best effort: see :func:`record_event`)."""
        await record_event(self._db, involved_object, reason, message, type_)


async def record_event(
    db: AsyncStateDB,
    involved_object: dict[str, Any],
    reason: str,
    message: str,
    type: str = NORMAL,
) -> dict[str, Any] | None:
    """Store an Event about ``involved_object``; return it, or None if it could not be stored.

    Args:
        db: the state database.
        involved_object: the object the event is about (its ``apiVersion``, ``kind``
            and ``metadata.name``/``namespace``/``uid`` are referenced).
        reason: a short CamelCase reason (``"Created"``, ``"FailedMount"``).
        message: one line for people.
        type: ``"Normal"`` or ``"Warning"``.

    Example::

        await record_event(db, pod, "FailedMount", "volume data: server not reachable",
                           WARNING)
    """
    _log_event(involved_object, reason, message, type)
    try:
        event = new_event(involved_object, reason, message, type)
        await db.put(event)
        await _prune(db)
        return event
    except Exception as exc:  # an event must never fail what it reports
        meta = involved_object.get("metadata") or {}
        log.warning("could not record event %s for %s/%s: %s: %s", reason,
                    meta.get("namespace"), meta.get("name"), exc.__class__.__name__, exc,
                    extra=fields(**object_fields(involved_object), reason=reason))
        return None


def _log_event(involved_object: dict[str, Any], reason: str, message: str,
               type: str) -> None:
    event_log.info("%s: %s", reason, " ".join(message.split()),
                   extra=fields(**object_fields(involved_object), reason=reason,
                                type=type if type != NORMAL else None))


def new_event(involved_object: dict[str, Any], reason: str, message: str,
              type: str = NORMAL) -> dict[str, Any]:
    """The v1 Event :func:`record_event` stores (pure; for tests and callers that batch)."""
    meta = involved_object.get("metadata") or {}
    namespace = meta.get("namespace") or "default"
    now = timestamp_now()
    reference = {
        "apiVersion": involved_object.get("apiVersion", "v1"),
        "kind": involved_object.get("kind", ""),
        "namespace": namespace,
        "name": meta.get("name", ""),
        "uid": meta.get("uid", ""),
    }
    if meta.get("resourceVersion"):
        reference["resourceVersion"] = meta["resourceVersion"]
    return {
        "apiVersion": "v1",
        "kind": EVENT,
        "metadata": {
            # Kubernetes names events <object>.<hex nanoseconds>.
            "name": f"{meta.get('name', 'unknown')}.{time.time_ns():x}",
            "namespace": namespace,
            "uid": str(uuid.uuid4()),
            "creationTimestamp": now,
        },
        "involvedObject": reference,
        "reason": reason,
        "message": " ".join(message.split()),
        "type": type,
        "source": {"component": COMPONENT, "host": socket.gethostname()},
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
        "reportingComponent": COMPONENT,
        "reportingInstance": socket.gethostname(),
    }


async def _prune(db: AsyncStateDB) -> None:
    """Delete events last seen more than TTL ago, at most once per PRUNE_INTERVAL."""
    now = time.monotonic()
    last = _last_pruned.get(db)
    if last is not None and now - last < PRUNE_INTERVAL:
        return
    _last_pruned[db] = now
    cutoff = datetime.datetime.now(datetime.UTC) - TTL
    for event in await db.list(EVENT):
        seen = parse_timestamp(event.get("lastTimestamp"))
        if seen is not None and seen < cutoff:
            meta = event["metadata"]
            await db.delete(EVENT, meta.get("namespace", ""), meta["name"])
