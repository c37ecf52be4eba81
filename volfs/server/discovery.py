"""Discovery: how a client learns which groups, versions and kinds the API serves.

``/version``, ``/api`` (APIVersions), ``/apis`` (APIGroupList), ``/apis/{group}``
(APIGroup), ``/api/v1`` and ``/apis/{group}/{version}`` (APIResourceList), built
from the resource registry, so a registered kind is discovered without more code.

kubectl 1.26 and later first ask ``/api`` and ``/apis`` for the aggregated form
(``Accept: application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,
...,application/json``). volfs answers the plain lists, with ``Content-Type:
application/json``, which is how an API server without aggregated discovery
answers; kubectl then reads each group version's APIResourceList.

``/openapi/v2`` is a document with no schemas (and ``/openapi/v3`` is not served):
``kubectl apply`` downloads it to validate manifests client-side, refuses to go on
when it cannot (unless ``--validate=false``), and skips the check for a kind the
document does not describe. volfs validates every object itself (unknown fields are
refused with 422), and kubectl's strategic merge patches come from its own built-in
types, so nothing is lost.
"""

from __future__ import annotations

import json
import platform
from typing import Any

import volfs
from volfs.server.resources import ResourceRegistry

KUBERNETES_MAJOR, KUBERNETES_MINOR = "1", "30"
_GOARCH = {"x86_64": "amd64", "aarch64": "arm64"}


def version() -> dict[str, Any]:
    """``/version``: the Kubernetes release whose API volfs follows, and volfs's own."""
    return {
        "major": KUBERNETES_MAJOR,
        "minor": KUBERNETES_MINOR,
        "gitVersion": f"v{KUBERNETES_MAJOR}.{KUBERNETES_MINOR}.0-volfs.{volfs.__version__}",
        "gitCommit": "",
        "gitTreeState": "",
        "buildDate": "",
        "goVersion": "",
        "compiler": "",
        "platform": f"linux/{_GOARCH.get(platform.machine(), platform.machine())}",
    }


# kubectl asks for the "@v1.0" form; the API server answers with this one ("@" is not
# valid in a Content-Type, and Go's mime parser refuses it).
OPENAPI_V2_PROTOBUF = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"


def openapi_v2(protobuf: bool) -> bytes:
    """``/openapi/v2``: Swagger 2.0 with an ``info`` and nothing else.

    kubectl asks for protobuf (gnostic's ``openapi_v2.Document``: ``swagger`` is
    field 1, ``info`` field 2, whose ``title`` and ``version`` are fields 1 and 2).

    >>> openapi_v2(protobuf=True).startswith(bytes([0x0A, 3]) + b"2.0")
    True
    """
    title, release = "volfs", f"v{KUBERNETES_MAJOR}.{KUBERNETES_MINOR}.0"
    if not protobuf:
        return json.dumps({"swagger": "2.0", "info": {"title": title, "version": release},
                           "paths": {}, "definitions": {}}).encode()
    info = _proto_field(1, title.encode()) + _proto_field(2, release.encode())
    return _proto_field(1, b"2.0") + _proto_field(2, info)


def _proto_field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def api_versions(registry: ResourceRegistry) -> dict[str, Any]:
    """``/api``: the core group's versions."""
    return {
        "kind": "APIVersions",
        "versions": registry.group_versions().get("", ["v1"]),
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}],
    }


def api_group(registry: ResourceRegistry, group: str) -> dict[str, Any] | None:
    """``/apis/{group}``, or None when no kind of that group is registered."""
    versions = registry.group_versions().get(group)
    if not group or not versions:
        return None
    entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": entries,
            "preferredVersion": entries[0]}


def api_groups(registry: ResourceRegistry) -> dict[str, Any]:
    """``/apis``: every named group (the core group is at ``/api``)."""
    groups = []
    for group in registry.group_versions():
        described = api_group(registry, group)
        if described is not None:
            described.pop("kind")
            described.pop("apiVersion")
            groups.append(described)
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def resource_list(registry: ResourceRegistry, group: str, version: str
                  ) -> dict[str, Any] | None:
    """``/api/v1`` or ``/apis/{group}/{version}``, or None for a version not served."""
    resources = registry.resources(group, version)
    if not resources:
        return None
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": [entry for r in resources for entry in (r.discovery(), *r.subresources())],
    }
