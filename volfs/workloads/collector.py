"""Garbage collection: pods and claims whose controlling workload no longer exists.

A workload deleted in the background (the default) is forgotten at once; its pods
go here, on the next pass. So do the pods a reconciler made for a workload deleted
while it made them, and the claims a StatefulSet owns (``whenDeleted: Delete``) once
no pod uses them any more. The pods are read before the workloads: a workload is
stored before any pod it owns, so a pod made during the pass never looks orphaned.
"""

from __future__ import annotations

import logging

from volfs.api.errors import Conflict, NotFound
from volfs.api.workloads import REPLICATION_CONTROLLER, STATEFUL_SET
from volfs.workloads.owners import terminating, workload_owner
from volfs.workloads.parts import POD, Object, Parts

log = logging.getLogger(__name__)

PVC = "PersistentVolumeClaim"


async def collect(parts: Parts) -> int:
    """Delete every orphaned dependent; how many were deleted."""
    pods = await parts.db.list(POD)
    claims = await parts.claims.list_claims()
    owners = {o["metadata"]["uid"] for kind in (REPLICATION_CONTROLLER, STATEFUL_SET)
              for o in await parts.db.list(kind)}
    collected = 0
    for pod in pods:
        ref = workload_owner(pod)
        if ref is None or ref.get("uid") in owners or terminating(pod):
            continue
        meta = pod["metadata"]
        log.info("pod %s/%s: collected (its %s %s is gone)", meta["namespace"], meta["name"],
                 ref.get("kind"), ref.get("name"))
        try:
            await parts.pods.delete_pod(meta["namespace"], meta["name"])
            collected += 1
        except NotFound:
            pass
    for claim in claims:
        ref = workload_owner(claim)
        if ref is None or ref.get("uid") in owners:
            continue
        collected += await _collect_claim(parts, claim)
    return collected


async def _collect_claim(parts: Parts, claim: Object) -> int:
    namespace, name = claim["metadata"]["namespace"], claim["metadata"]["name"]
    users = await parts.pods.claim_users(namespace, name)
    if users:
        return 0  # its pods go first; a later pass takes the claim
    try:
        await parts.claims.delete_claim(namespace, name, users)
    except (NotFound, Conflict):
        return 0
    log.info("persistentvolumeclaim %s/%s: collected (its statefulset is gone)", namespace,
             name)
    return 1
