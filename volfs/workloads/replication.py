"""One pass of a ReplicationController: as many pods as ``spec.replicas`` say.

Its pods are the pods of its namespace whose controller reference names its uid;
pods that match its selector and have no controller are adopted (a controller
deleted with ``--cascade=orphan`` and applied again takes its pods back). Missing
pods are made from the template with generated names; surplus pods are deleted,
newest first. A pod being deleted (Terminating) no longer counts: its replacement
is made at once, as Kubernetes does.

Restarts need no record of their own: a pod is committed, with its owner reference,
before its create returns, so counting the stored pods after a ``kill -9`` finds every
pod made before it, and no pod is made twice.
"""

from __future__ import annotations

import logging
import random

from volfs.api import ManifestError, parse_pod
from volfs.api.errors import AlreadyExists, Invalid, NotFound, SetupFailed
from volfs.api.workloads import owner_reference, selector_matches, template_pod
from volfs.logs import fields
from volfs.workloads.owners import (
    controller_ref,
    created_key,
    labels_of,
    owned_by,
    pod_ready,
    terminating,
)
from volfs.workloads.parts import CreateFailed, Object, Parts

log = logging.getLogger(__name__)

_SUFFIX = "bcdfghjklmnpqrstvwxz2456789"  # as the API server's generateName


async def reconcile_controller(parts: Parts, rc: Object) -> Object:
    """Bring the controller's pods to ``spec.replicas``; return its new status.

    Raises:
        CreateFailed: a pod could not be made (the others made before it stay).
    """
    meta = rc["metadata"]
    uid, namespace = meta["uid"], meta["namespace"]
    pods = await parts.pods_of(namespace)
    mine = [p for p in pods if owned_by(p, uid)]
    for pod in pods:
        if (controller_ref(pod) is None and not terminating(pod)
                and selector_matches(rc, labels_of(pod))):
            mine.append(await _adopt(parts, rc, pod))
    active = [p for p in mine if not terminating(p)]
    wanted = int(rc["spec"]["replicas"])
    if len(active) < wanted:
        for _ in range(wanted - len(active)):
            active.append(await _create(parts, rc))
    elif len(active) > wanted:
        surplus = sorted(active, key=created_key, reverse=True)[:len(active) - wanted]
        for pod in surplus:
            await _delete(parts, rc, pod)
            active.remove(pod)
    return _status(rc, active)


async def _adopt(parts: Parts, rc: Object, pod: Object) -> Object:
    refs = [*(pod["metadata"].get("ownerReferences") or []), owner_reference(rc)]
    adopted = dict(pod, metadata=dict(pod["metadata"], ownerReferences=refs))
    try:
        return await parts.pods.update_pod(adopted)
    except (NotFound, Invalid):
        return pod


async def _create(parts: Parts, rc: Object) -> Object:
    name = f"{rc['metadata']['name']}-{''.join(random.choices(_SUFFIX, k=5))}"
    try:
        created = await parts.pods.create_pod(parse_pod(template_pod(rc, name)))
    except (ManifestError, Invalid, SetupFailed, AlreadyExists) as exc:
        await parts.event(rc, "FailedCreate", f"Error creating pod {name}: {exc}",
                          warning=True)
        raise CreateFailed(str(exc)) from exc
    log.info("replicationcontroller %s/%s: created pod %s", rc["metadata"]["namespace"],
             rc["metadata"]["name"], name, extra=fields(pod=name))
    await parts.event(rc, "SuccessfulCreate", f"Created pod: {name}")
    return created


async def _delete(parts: Parts, rc: Object, pod: Object) -> None:
    name = pod["metadata"]["name"]
    try:
        await parts.pods.delete_pod(pod["metadata"]["namespace"], name)
    except NotFound:
        return  # deleted meanwhile by someone else
    await parts.event(rc, "SuccessfulDelete", f"Deleted pod: {name}")


def _status(rc: Object, active: list[Object]) -> Object:
    ready = sum(1 for p in active if pod_ready(p))
    labelled = sum(1 for p in active if all(
        labels_of(p).get(k) == v for k, v in labels_of(
            {"metadata": rc["spec"]["template"].get("metadata") or {}}).items()))
    return {"replicas": len(active), "fullyLabeledReplicas": labelled,
            "readyReplicas": ready, "availableReplicas": ready,
            "observedGeneration": rc["metadata"].get("generation") or 1}
