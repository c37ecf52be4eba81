"""The PV-source registry: one plugin per kind, abilities found only where implemented."""

from __future__ import annotations

from typing import Any

import pytest

from volfs.api.storage import build_volume
from volfs.persistent import (
    PROVISIONED_BY,
    NfsSource,
    PersistentSources,
    SourceRefused,
)
from volfs.persistent.plugins import ClosableStore


class NoShares:
    """ShareOps that must not be called: these tests only look plugins up."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"{name} called")


class OpenOnly:
    """A kind that can only be opened: no provisioning, deleting or recycling."""

    source_kind = "local"
    kind_dir = "kubernetes.io~local-volume"

    async def open_store(self, pv: Any) -> ClosableStore:
        raise NotImplementedError


def _pv(annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": "v", "annotations": annotations or {}},
            "spec": {"nfs": {"server": "s", "path": "/p"}}}


def test_a_kind_has_one_plugin_and_a_provisioner_one_name() -> None:
    with pytest.raises(ValueError, match="two plugins for PersistentVolume source nfs"):
        PersistentSources([NfsSource(NoShares()), NfsSource(NoShares())])
    sources = PersistentSources([NfsSource(NoShares()), OpenOnly()])
    assert sources.kinds() == ["local", "nfs"]
    assert isinstance(sources.provisioner("volfs.io/nfs"), NfsSource)
    assert sources.provisioner("example.com/other") is None


def test_only_what_a_plugin_provisioned_is_its_to_delete() -> None:
    sources = PersistentSources([NfsSource(NoShares())])
    assert sources.deleter(_pv()) is None  # made by an admin, not provisioned
    assert sources.deleter(_pv({PROVISIONED_BY: "volfs.io/nfs"})) is not None
    assert sources.recycler(_pv()) is not None


def test_a_kind_without_an_ability_is_not_offered_for_it() -> None:
    sources = PersistentSources([OpenOnly()])
    local = {"metadata": {"name": "v", "annotations": {PROVISIONED_BY: "x"}},
             "spec": {"local": {"path": "/d"}}}
    assert sources.deleter(local) is None
    assert sources.recycler(local) is None
    assert sources.deleter(_pv({PROVISIONED_BY: "volfs.io/nfs"})) is None  # nfs: no plugin


def test_a_volume_of_a_kind_no_plugin_serves_is_refused_in_one_line() -> None:
    pv = build_volume({"apiVersion": "v1", "kind": "PersistentVolume",
                       "metadata": {"name": "v"},
                       "spec": {"capacity": {"storage": "1Gi"},
                                "accessModes": ["ReadWriteOnce"],
                                "nfs": {"server": "s", "path": "/p"}}}, None)
    assert pv.spec.source_kind() == "nfs"
    with pytest.raises(SourceRefused, match="no plugin serves PersistentVolume source nfs"):
        PersistentSources([OpenOnly()]).for_volume(pv)
    assert isinstance(PersistentSources([NfsSource(NoShares())]).for_volume(pv), NfsSource)
