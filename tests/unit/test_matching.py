"""The binder's choice of volume: Kubernetes' rules, case by case."""

from __future__ import annotations

from typing import Any

import pytest

from volfs.api.storage import (
    PersistentVolume,
    PersistentVolumeClaim,
    StorageClass,
    build_claim,
    build_storage_class,
    build_volume,
)
from volfs.controllers.matching import effective_class, find_match, why_pending


def pv(name: str, size: str, *, cls: str = "", modes: tuple[str, ...] = ("ReadWriteOnce",),
       labels: dict[str, str] | None = None, claim_ref: dict[str, Any] | None = None
       ) -> PersistentVolume:
    spec: dict[str, Any] = {"capacity": {"storage": size}, "accessModes": list(modes),
                            "storageClassName": cls,
                            "nfs": {"server": "127.0.0.1", "path": f"/{name}"}}
    if claim_ref:
        spec["claimRef"] = claim_ref
    return build_volume({"apiVersion": "v1", "kind": "PersistentVolume",
                         "metadata": {"name": name, "labels": labels or {}}, "spec": spec},
                        None)


def pvc(size: str, *, cls: str | None = None, modes: tuple[str, ...] = ("ReadWriteOnce",),
        selector: dict[str, Any] | None = None, name: str = "claim",
        volume_name: str | None = None) -> PersistentVolumeClaim:
    spec: dict[str, Any] = {"accessModes": list(modes),
                            "resources": {"requests": {"storage": size}}}
    if cls is not None:
        spec["storageClassName"] = cls
    if selector is not None:
        spec["selector"] = selector
    if volume_name:
        spec["volumeName"] = volume_name
    return build_claim({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                        "metadata": {"name": name, "uid": "u-1"}, "spec": spec}, None)


def sc(name: str, default: bool = False) -> StorageClass:
    annotations = {"storageclass.kubernetes.io/is-default-class": "true"} if default else {}
    return build_storage_class({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": name, "annotations": annotations},
        "provisioner": "volfs.io/nfs",
        "parameters": {"server": "127.0.0.1", "share": "/exports"}}, None)


def choose(claim: PersistentVolumeClaim, *volumes: PersistentVolume,
           phases: dict[str, str] | None = None, classes: tuple[StorageClass, ...] = ()
           ) -> str | None:
    phases = phases or {}
    found = find_match(claim, [(v, phases.get(v.metadata.name, "Available")) for v in volumes],
                       effective_class(claim, classes))
    return found.metadata.name if found else None


def test_smallest_volume_that_fits_wins() -> None:
    assert choose(pvc("2Gi"), pv("big", "10Gi"), pv("fits", "3Gi"), pv("small", "1Gi")) == "fits"


def test_too_small_volumes_never_match() -> None:
    assert choose(pvc("5Gi"), pv("a", "1Gi"), pv("b", "4Gi")) is None


def test_class_must_be_the_same() -> None:
    assert choose(pvc("1Gi", cls="fast"), pv("slow", "1Gi", cls="slow")) is None
    assert choose(pvc("1Gi", cls="fast"), pv("fast", "1Gi", cls="fast")) == "fast"


def test_unset_class_means_the_default_class_and_empty_means_none() -> None:
    volumes = (pv("classless", "1Gi"), pv("gold", "1Gi", cls="gold"))
    classes = (sc("gold", default=True),)
    assert choose(pvc("1Gi"), *volumes, classes=classes) == "gold"
    assert choose(pvc("1Gi", cls=""), *volumes, classes=classes) == "classless"
    assert choose(pvc("1Gi"), *volumes) == "classless"  # no default class at all


def test_access_modes_must_all_be_offered() -> None:
    rwx = pvc("1Gi", modes=("ReadWriteMany",))
    assert choose(rwx, pv("rwo", "1Gi")) is None
    assert choose(rwx, pv("rwo", "1Gi"), pv("rwx", "5Gi", modes=("ReadWriteMany",
                                                                   "ReadOnlyMany"))) == "rwx"


def test_selector_labels_and_expressions() -> None:
    claim = pvc("1Gi", selector={"matchLabels": {"tier": "db"},
                                 "matchExpressions": [{"key": "zone", "operator": "In",
                                                       "values": ["a", "b"]}]})
    assert choose(claim, pv("web", "1Gi", labels={"tier": "web", "zone": "a"}),
                  pv("db-c", "1Gi", labels={"tier": "db", "zone": "c"})) is None
    assert choose(claim, pv("db-a", "2Gi", labels={"tier": "db", "zone": "a"})) == "db-a"


def test_claim_ref_prebinding_wins_and_reserves() -> None:
    ref = {"namespace": "default", "name": "claim"}
    assert choose(pvc("1Gi"), pv("exact", "1Gi"),
                  pv("reserved", "9Gi", cls="other", claim_ref=ref)) == "reserved"
    other = {"namespace": "default", "name": "someone-else"}
    assert choose(pvc("1Gi"), pv("taken", "1Gi", claim_ref=other)) is None
    wrong_uid = {"namespace": "default", "name": "claim", "uid": "u-2"}
    assert choose(pvc("1Gi"), pv("old", "1Gi", claim_ref=wrong_uid)) is None


def test_only_available_volumes_match() -> None:
    assert choose(pvc("1Gi"), pv("released", "1Gi"), phases={"released": "Released"}) is None


def test_volume_name_picks_that_volume() -> None:
    assert choose(pvc("1Gi", volume_name="b"), pv("a", "1Gi"), pv("b", "3Gi")) == "b"


@pytest.mark.parametrize(("claim", "classes", "message"), [
    (pvc("1Gi", cls=""), (), "no persistent volumes available for this claim and no "
                             "storage class is set"),
    (pvc("1Gi", cls="gone"), (), 'storageclass.storage.k8s.io "gone" not found'),
])
def test_pending_reasons_use_the_controllers_wording(
        claim: PersistentVolumeClaim, classes: tuple[StorageClass, ...], message: str) -> None:
    assert why_pending(claim, effective_class(claim, classes), classes)[1] == message
