"""Owner references, and what the reconcilers read of a stored pod."""

from __future__ import annotations

from typing import Any

Object = dict[str, Any]
WORKLOAD_KINDS = ("ReplicationController", "StatefulSet")


def controller_ref(obj: Object) -> Object | None:
    """The owner reference marked ``controller: true``, or None."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if isinstance(ref, dict) and ref.get("controller") is True:
            return ref
    return None


def owned_by(obj: Object, uid: str) -> bool:
    ref = controller_ref(obj)
    return ref is not None and ref.get("uid") == uid


def workload_owner(obj: Object) -> Object | None:
    """The controller reference, if it names a workload kind volfs runs."""
    ref = controller_ref(obj)
    return ref if ref is not None and ref.get("kind") in WORKLOAD_KINDS else None


def without_owner(obj: Object, uid: str) -> Object:
    """``obj`` with its references to ``uid`` dropped (an orphaned dependent)."""
    meta = dict(obj["metadata"])
    refs = [r for r in meta.get("ownerReferences") or [] if r.get("uid") != uid]
    if refs:
        meta["ownerReferences"] = refs
    else:
        meta.pop("ownerReferences", None)
    return dict(obj, metadata=meta)


def terminating(obj: Object) -> bool:
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


def pod_ready(pod: Object) -> bool:
    """Running with its volumes set up, and every container volfs runs ready."""
    status = pod.get("status") or {}
    if status.get("phase") != "Running" or terminating(pod):
        return False
    containers = status.get("containerStatuses")
    return not isinstance(containers, list) or all(c.get("ready") is not False
                                                   for c in containers)


def labels_of(obj: Object) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("labels") or {})


def created_key(obj: Object) -> tuple[str, str]:
    """Sorts objects oldest first (by creation time, then name)."""
    meta = obj.get("metadata") or {}
    return str(meta.get("creationTimestamp") or ""), str(meta.get("name") or "")
