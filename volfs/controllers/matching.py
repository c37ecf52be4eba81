"""Which PersistentVolume a claim gets: Kubernetes' matching rules, as pure functions.

The rules of kube-controller-manager's PV controller (``findMatchingVolume``):

1. A volume whose ``claimRef`` names this claim wins if it is big enough.
2. Otherwise, among *Available* volumes with no ``claimRef``, of the claim's class,
   offering every access mode the claim asks for, matching its selector and big
   enough, the **smallest** wins (ties: the first by name, for determinism).
3. A claim whose ``storageClassName`` is unset gets the default class (if one is
   marked default); ``""`` means "no class" and matches only class-less volumes.
"""

from __future__ import annotations

from collections.abc import Iterable

from volfs.api.storage import PersistentVolume, PersistentVolumeClaim, StorageClass

AVAILABLE = "Available"


def effective_class(claim: PersistentVolumeClaim, classes: Iterable[StorageClass]) -> str:
    """The class a claim asks for, after defaulting (unset -> the default class, if any)."""
    if claim.spec.storage_class_name is not None:
        return claim.spec.storage_class_name
    defaults = sorted(c.metadata.name for c in classes if c.is_default())
    return defaults[0] if defaults else ""


def claim_ref_matches(pv: PersistentVolume, claim: PersistentVolumeClaim) -> bool:
    """Whether the volume's claimRef names this claim (and, if it has a uid, this very one)."""
    ref = pv.spec.claim_ref
    if ref is None:
        return False
    if (ref.namespace, ref.name) != (claim.metadata.namespace, claim.metadata.name):
        return False
    return ref.uid is None or ref.uid == claim.metadata.uid


def offers_modes(pv: PersistentVolume, claim: PersistentVolumeClaim) -> bool:
    return set(claim.spec.access_modes) <= set(pv.spec.access_modes)


def find_match(claim: PersistentVolumeClaim, volumes: Iterable[tuple[PersistentVolume, str]],
               claim_class: str) -> PersistentVolume | None:
    """The volume the claim binds to now, or None.

    Args:
        claim: the claim (unbound).
        volumes: every PV with its current phase.
        claim_class: :func:`effective_class` of the claim.
    """
    wanted = claim.spec.request_bytes()
    best: PersistentVolume | None = None
    for pv, phase in sorted(volumes, key=lambda v: v[0].metadata.name):
        size = pv.spec.capacity_bytes()
        if size < wanted:
            continue
        if claim_ref_matches(pv, claim):
            return pv  # pre-bound by an admin: it wins
        if claim.spec.volume_name and pv.metadata.name != claim.spec.volume_name:
            continue
        if phase != AVAILABLE or pv.spec.claim_ref is not None:
            continue
        if pv.spec.storage_class_name != claim_class or not offers_modes(pv, claim):
            continue
        selector = claim.spec.selector
        if selector is not None and not selector.matches(pv.metadata.labels):
            continue
        if best is None or size < best.spec.capacity_bytes():
            best = pv
    return best


def why_pending(claim: PersistentVolumeClaim, claim_class: str,
                classes: Iterable[StorageClass]) -> tuple[str, str]:
    """(reason, message) for a claim nothing matched, in the controller's wording."""
    if not claim_class:
        return ("FailedBinding",
                "no persistent volumes available for this claim and no storage class is set")
    known = {c.metadata.name: c for c in classes}
    if claim_class not in known:
        return "ProvisioningFailed", f'storageclass.storage.k8s.io "{claim_class}" not found'
    if claim.spec.selector is not None:
        return ("ProvisioningFailed",
                "claim Selector is not supported: no volume matches and volfs does not "
                "provision claims with a selector")
    return "FailedBinding", "no persistent volumes available for this claim"
