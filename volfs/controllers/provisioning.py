"""Provisioning: a PV made for a claim that no PV fits, by its class's provisioner plugin
(:mod:`volfs.persistent`), recorded as Kubernetes records it."""

from __future__ import annotations

import trio

from volfs.api.storage import PersistentVolumeClaim, build_volume
from volfs.controllers.world import (
    PV,
    EventSink,
    Object,
    World,
    as_class,
    claim_ref_obj,
    new_object,
)
from volfs.metrics import PROVISIONER_OPERATIONS
from volfs.persistent import PROVISIONED_BY, PersistentSources


class Provisioning:
    def __init__(self, sources: PersistentSources, events: EventSink) -> None:
        self._sources = sources
        self._record = events.record

    async def provision(self, world: World, claim: PersistentVolumeClaim,
                         claim_class: str) -> Object | None:
        """A new PV for ``claim`` from its class's provisioner plugin, or None."""
        sc_obj = world.classes.get(claim_class)
        if sc_obj is None or claim.spec.selector is not None:
            return None
        sc = as_class(sc_obj)
        provisioner = self._sources.provisioner(sc.provisioner)
        if provisioner is None:
            return None
        pv_name = f"pvc-{claim.metadata.uid}"
        started = trio.current_time()
        try:
            made = await provisioner.provision(claim, sc, pv_name)
        except (OSError, ValueError) as exc:
            PROVISIONER_OPERATIONS.series("provision", "failure").observe(
                trio.current_time() - started)
            await self._record(claim_ref_obj(claim), "Warning", "ProvisioningFailed",
                               f"failed to provision volume with StorageClass "
                               f'"{claim_class}": {exc}')
            return None
        PROVISIONER_OPERATIONS.series("provision", "success").observe(
            trio.current_time() - started)
        pv = {
            "apiVersion": "v1", "kind": PV,
            "metadata": {"name": pv_name, "annotations": {
                PROVISIONED_BY: sc.provisioner, **made.annotations}},
            "spec": {"capacity": {"storage": claim.spec.resources.requests["storage"]},
                     "accessModes": list(claim.spec.access_modes),
                     "persistentVolumeReclaimPolicy": sc.reclaim_policy,
                     "storageClassName": claim_class, **made.spec},
        }
        obj = new_object(build_volume(pv, None).to_k8s(), {"phase": "Available"})
        await self._record(claim_ref_obj(claim), "Normal", "ProvisioningSucceeded",
                           f"Successfully provisioned volume {pv_name}")
        return obj
