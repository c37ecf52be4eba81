"""One pass of a StatefulSet: pods ``<set>-0`` .. ``<set>-<replicas-1>``, each with its
own claims ``<template>-<set>-<ordinal>``.

A replica's claims are made (as a user's claims are: the binder binds or provisions
them) before its pod, so a pod never exists without its claims, even after a
``kill -9`` between the two. A deleted pod comes back with the same name, hence the
same claims and the same data. With ``podManagementPolicy: OrderedReady`` (the
default) a pod is made only once every lower ordinal is Running, and a pass stops
at the first replica that is not; scale-down deletes the highest ordinals first.
Claims outlive their pods unless ``persistentVolumeClaimRetentionPolicy`` says
``whenScaled: Delete`` (removed with a scaled-down pod) or ``whenDeleted: Delete``
(owned by the set, collected with it: see :mod:`volfs.workloads.collector`).
"""

from __future__ import annotations

import logging

from volfs.api import ManifestError, parse_pod
from volfs.api.errors import AlreadyExists, Conflict, Invalid, NotFound, SetupFailed
from volfs.api.storage import build_claim
from volfs.api.workloads import (
    claim_templates,
    owner_reference,
    selector_matches,
    stateful_claim,
    stateful_pod,
)
from volfs.logs import fields
from volfs.workloads.owners import controller_ref, labels_of, owned_by, pod_ready, terminating
from volfs.workloads.parts import CreateFailed, Object, Parts

log = logging.getLogger(__name__)


def ordinal_of(set_name: str, pod_name: str) -> int | None:
    """``2`` for pod ``web-2`` of set ``web``; None for a name that is not a replica's."""
    prefix, _, number = pod_name.rpartition("-")
    return int(number) if prefix == set_name and number.isdigit() else None


async def reconcile_stateful_set(parts: Parts, sts: Object) -> Object:
    """Make the missing replicas (in order), remove the surplus; return the new status.

    Raises:
        CreateFailed: a claim or pod could not be made, or a pod of that name belongs
            to something else.
    """
    meta = sts["metadata"]
    name, uid = meta["name"], meta["uid"]
    pods = {p["metadata"]["name"]: p for p in await parts.pods_of(meta["namespace"])}
    ordered = sts["spec"].get("podManagementPolicy", "OrderedReady") == "OrderedReady"
    wanted = int(sts["spec"]["replicas"])
    for ordinal in range(wanted):
        pod = pods.get(f"{name}-{ordinal}")
        if pod is not None and not owned_by(pod, uid):
            pod = await _adopt_or_refuse(parts, sts, pod)
        if pod is None:
            pod = pods[f"{name}-{ordinal}"] = await _create_replica(parts, sts, ordinal)
        if ordered and not pod_ready(pod):
            break  # the next ordinal waits for this one
    mine = [p for p in pods.values() if owned_by(p, uid)]
    surplus = [p for p in mine if (ordinal_of(name, p["metadata"]["name"]) or 0) >= wanted
               and ordinal_of(name, p["metadata"]["name"]) is not None]
    for pod in sorted(surplus, key=lambda p: -(ordinal_of(name, p["metadata"]["name"]) or 0)):
        if not terminating(pod):
            await _scale_down(parts, sts, pod)
    active = [p for p in mine if not terminating(p) and p not in surplus]
    return _status(sts, active)


async def _adopt_or_refuse(parts: Parts, sts: Object, pod: Object) -> Object:
    """A pod that has the replica's name but not this set as controller: adopted if it
    has no controller and matches the selector, else a conflict to report."""
    if controller_ref(pod) is None and selector_matches(sts, labels_of(pod)):
        refs = [*(pod["metadata"].get("ownerReferences") or []), owner_reference(sts)]
        try:
            return await parts.pods.update_pod(
                dict(pod, metadata=dict(pod["metadata"], ownerReferences=refs)))
        except (NotFound, Invalid):
            pass
    message = (f"pod {pod['metadata']['name']} exists and is not a replica of "
               f"statefulset {sts['metadata']['name']}; delete it")
    await parts.event(sts, "FailedCreate", message, warning=True)
    raise CreateFailed(message)


async def _create_replica(parts: Parts, sts: Object, ordinal: int) -> Object:
    """The replica's claims (those missing), then its pod."""
    for template in claim_templates(sts):
        claim = stateful_claim(sts, template, ordinal)
        if sts["spec"].get("persistentVolumeClaimRetentionPolicy", {}).get(
                "whenDeleted") == "Delete":
            claim["metadata"]["ownerReferences"] = [owner_reference(sts)]
        try:
            await parts.claims.create_claim(build_claim(claim, None))
        except AlreadyExists:
            continue  # made before (the pod was deleted, or a restart came between)
        except (ManifestError, Invalid, Conflict) as exc:
            await _failed(parts, sts, f"claim {claim['metadata']['name']}", exc)
        await parts.event(sts, "SuccessfulCreate",
                          f"create Claim {claim['metadata']['name']} Pod "
                          f"{sts['metadata']['name']}-{ordinal} in StatefulSet "
                          f"{sts['metadata']['name']} success")
    doc = stateful_pod(sts, ordinal)
    name = doc["metadata"]["name"]
    try:
        created = await parts.pods.create_pod(parse_pod(doc))
    except (ManifestError, Invalid, SetupFailed, AlreadyExists) as exc:
        await _failed(parts, sts, f"pod {name}", exc)
    log.info("statefulset %s/%s: created pod %s", sts["metadata"]["namespace"],
             sts["metadata"]["name"], name, extra=fields(pod=name))
    await parts.event(sts, "SuccessfulCreate", f"create Pod {name} in StatefulSet "
                      f"{sts['metadata']['name']} successful")
    return created


async def _failed(parts: Parts, sts: Object, what: str, exc: Exception) -> None:
    await parts.event(sts, "FailedCreate", f"create {what} failed: {exc}", warning=True)
    raise CreateFailed(f"{what}: {exc}") from exc


async def _scale_down(parts: Parts, sts: Object, pod: Object) -> None:
    """Delete a replica past ``spec.replicas``; its claims too if the policy says so."""
    namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
    try:
        await parts.pods.delete_pod(namespace, name)
    except NotFound:
        return
    await parts.event(sts, "SuccessfulDelete", f"delete Pod {name} in StatefulSet "
                      f"{sts['metadata']['name']} successful")
    policy = sts["spec"].get("persistentVolumeClaimRetentionPolicy") or {}
    if policy.get("whenScaled") != "Delete":
        return
    ordinal = ordinal_of(sts["metadata"]["name"], name)
    for template in claim_templates(sts):
        claim = stateful_claim(sts, template, ordinal or 0)["metadata"]["name"]
        try:
            await parts.claims.delete_claim(namespace, claim,
                                            await parts.pods.claim_users(namespace, claim))
        except (NotFound, Conflict) as exc:
            log.info("statefulset %s: claim %s kept: %s", sts["metadata"]["name"], claim, exc)


def _status(sts: Object, active: list[Object]) -> Object:
    ready = sum(1 for p in active if pod_ready(p))
    return {"replicas": len(active), "readyReplicas": ready, "currentReplicas": len(active),
            "updatedReplicas": len(active), "availableReplicas": ready,
            "observedGeneration": sts["metadata"].get("generation") or 1}
