"""A pod's stored form and the conditions it reports: new, waiting for volumes, ready."""

from __future__ import annotations

import uuid
from typing import Any

from volfs.api import ManifestError, Pod, parse_pod
from volfs.api.errors import SetupFailed
from volfs.api.times import timestamp_now
from volfs.lifecycle.volumes import PodRef

POD = "Pod"
Object = dict[str, Any]


def new_object(pod: Pod) -> Object:
    """The stored form of a new pod: the manifest plus identity and status."""
    obj = pod.to_k8s()
    created = timestamp_now()
    meta = obj.setdefault("metadata", {})
    meta.update(uid=str(uuid.uuid4()), creationTimestamp=created,
                namespace=pod.metadata.namespace)
    obj["status"] = {
        "phase": "Running",
        "startTime": created,
        "conditions": [{"type": "VolumesReady", "status": "True",
                        "lastTransitionTime": created}],
    }
    return obj


def parse(obj: Object) -> Pod:
    """A stored object back into a Pod (it was valid when stored)."""
    try:
        return parse_pod(obj, None)
    except ManifestError as exc:  # only a hand-edited database gets here
        raise SetupFailed(f"stored pod {obj['metadata'].get('name')} is invalid: {exc}") from exc


def ref(obj: Object) -> PodRef:
    meta = obj["metadata"]
    return PodRef(meta["uid"], meta.get("namespace") or "default", meta["name"])


def waiting(obj: Object) -> bool:
    """Whether the pod waits for volumes (a claim not bound yet)."""
    return any(c.get("type") == "VolumesReady" and c.get("status") == "False"
               for c in (obj.get("status") or {}).get("conditions") or [])


def mark_waiting(obj: Object, reasons: list[str]) -> None:
    """Pending, with what it waits for (as kubelet reports an unmountable volume)."""
    status = obj["status"]
    status["phase"] = "Pending"
    status["conditions"] = [{"type": "VolumesReady", "status": "False",
                             "reason": "VolumesNotReady", "message": "; ".join(reasons),
                             "lastTransitionTime": timestamp_now()}]


def mark_ready(obj: Object) -> None:
    status = obj["status"]
    status["phase"] = "Running"
    status["conditions"] = [{"type": "VolumesReady", "status": "True",
                             "lastTransitionTime": timestamp_now()}]
