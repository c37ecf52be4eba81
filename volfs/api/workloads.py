"""ReplicationController (v1) and StatefulSet (apps/v1): checked, and the pods and claims
their templates make (pure: the controllers in ``volfs.workloads`` store and run them).

A workload is kept as its Kubernetes JSON (a :class:`Workload`), normalised: the
replicas and selector defaulted, the pod template checked as a Pod is (errors name the
template's own fields, ``spec.template.spec.volumes[0]...``), each claim template as a
claim is.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from volfs.api.errors import Cause, ManifestError, quote
from volfs.api.models import ObjectMeta
from volfs.api.storage import LabelSelector, build_claim
from volfs.api.validation import build_pod, check_subdomain, decode_causes

__all__ = ["MAX_REPLICAS", "REPLICATION_CONTROLLER", "STATEFUL_SET", "Workload",
           "build_replication_controller", "build_stateful_set", "claim_name", "claim_templates",
           "owner_reference", "selector_matches", "stateful_claim", "stateful_pod",
           "template_pod"]

Object = dict[str, Any]

REPLICATION_CONTROLLER = "ReplicationController"
STATEFUL_SET = "StatefulSet"
API_VERSIONS = {REPLICATION_CONTROLLER: "v1", STATEFUL_SET: "apps/v1"}
MAX_REPLICAS = 1000
"""More replicas than this is refused: each one is a pod with its own volumes."""

_TOP = {"apiVersion", "kind", "metadata", "spec", "status"}
_RC_SPEC = {"replicas", "selector", "template", "minReadySeconds"}
_STS_SPEC = {"replicas", "selector", "template", "serviceName", "volumeClaimTemplates",
             "podManagementPolicy", "updateStrategy", "revisionHistoryLimit",
             "minReadySeconds", "persistentVolumeClaimRetentionPolicy", "ordinals"}
_TEMPLATE = {"metadata", "spec"}
_RETENTION = ("Retain", "Delete")


@dataclass(frozen=True)
class Workload:
    """A checked ReplicationController or StatefulSet, as its Kubernetes JSON."""

    doc: Object

    @property
    def kind(self) -> str:
        return str(self.doc["kind"])

    @property
    def name(self) -> str:
        return str(self.doc["metadata"]["name"])

    @property
    def metadata(self) -> ObjectMeta:
        """Its ``metadata``, typed as every kind's is."""
        return ObjectMeta.model_validate(self.doc["metadata"], by_alias=True, by_name=False)

    @property
    def namespace(self) -> str:
        return str(self.doc["metadata"].get("namespace") or "default")

    def to_k8s(self) -> Object:
        return copy.deepcopy(self.doc)


def build_replication_controller(doc: Object, source: str | None) -> Workload:
    """Check a v1 ReplicationController; the selector defaults to the template's labels.

    Raises:
        ManifestError: every cause found (unknown fields, a bad name, replicas out of
            range, a selector the template's labels do not match, an invalid template).
    """
    causes: list[Cause] = []
    out = _common(doc, REPLICATION_CONTROLLER, _RC_SPEC, causes)
    _raise_if(source, causes)
    _check_template(out, [], source)  # first: its labels must be valid to be matched
    spec = out["spec"]
    labels = _template_labels(spec)
    selector = spec.get("selector")
    if selector in (None, {}):
        selector = dict(labels)
    if not isinstance(selector, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in selector.items()):
        causes.append(("spec.selector", f"Invalid value: {quote(selector)}: must be a "
                       "mapping of label names to values"))
    elif not selector:
        causes.append(("spec.selector", "Required value"))
    elif any(labels.get(k) != v for k, v in selector.items()):
        causes.append(("spec.template.metadata.labels", f"Invalid value: {quote(labels)}: "
                       "`selector` does not match template `labels`"))
    spec["selector"] = selector
    _raise_if(source, causes)
    return Workload(out)


def build_stateful_set(doc: Object, source: str | None) -> Workload:
    """Check an apps/v1 StatefulSet: its selector, pod template and claim templates.

    Raises:
        ManifestError: every cause found.
    """
    causes: list[Cause] = []
    out = _common(doc, STATEFUL_SET, _STS_SPEC, causes)
    spec = out["spec"]
    selector = spec.get("selector")
    if selector is None:
        causes.append(("spec.selector", "Required value"))
    else:
        try:
            parsed = LabelSelector.model_validate(selector, by_alias=True, by_name=False)
        except ValidationError as exc:
            causes += [(f"spec.selector.{f}".rstrip("."), m)
                       for f, m in decode_causes(exc, selector)]
        else:
            if not parsed.match_labels and not parsed.match_expressions:
                causes.append(("spec.selector", "Invalid value: {}: empty selector is "
                               "invalid for statefulset"))
            elif not parsed.matches(_template_labels(spec)):
                causes.append(("spec.template.metadata.labels", "Invalid value: "
                               f"{quote(_template_labels(spec))}: `selector` does not match "
                               "template `labels`"))
    policy = spec.setdefault("podManagementPolicy", "OrderedReady")
    if policy not in ("OrderedReady", "Parallel"):
        causes.append(("spec.podManagementPolicy", f"Unsupported value: {quote(policy)}: "
                       'supported values: "OrderedReady", "Parallel"'))
    causes += _check_retention(spec)
    templates = spec.setdefault("volumeClaimTemplates", [])
    if not isinstance(templates, list):
        causes.append(("spec.volumeClaimTemplates", "Invalid value: must be a list"))
        templates = []
    _raise_if(source, causes)
    names = []
    for i, template in enumerate(templates):
        path = f"spec.volumeClaimTemplates[{i}]"
        if not isinstance(template, dict):
            raise ManifestError(source, [(path, "Invalid value: must be a mapping")])
        claim = {**template, "apiVersion": "v1", "kind": "PersistentVolumeClaim"}
        meta = claim["metadata"] = dict(claim.get("metadata") or {})
        meta["namespace"] = out["metadata"].get("namespace") or "default"
        try:
            build_claim(claim, source)
        except ManifestError as err:
            raise err.map_fields(functools.partial(_under, path)) from None
        names.append(str(meta.get("name")))
    _check_template(out, names, source)
    return Workload(out)


def _common(doc: Object, kind: str, spec_fields: set[str], causes: list[Cause]) -> Object:
    """The parts both kinds share: known fields, metadata, replicas (defaulted to 1)."""
    out = copy.deepcopy(doc)
    causes += [(k, f'unknown field "{k}"') for k in out if k not in _TOP]
    try:
        meta = ObjectMeta.model_validate(out.get("metadata") or {}, by_alias=True,
                                         by_name=False)
    except ValidationError as exc:
        causes += [(f"metadata.{f}", m) for f, m in decode_causes(exc, out.get("metadata"))]
        meta = ObjectMeta()
    if not meta.name:
        causes.append(("metadata.name", "Required value"))
    else:
        causes += check_subdomain("metadata.name", meta.name)
    out["metadata"] = {**(out.get("metadata") or {}), "namespace": meta.namespace}
    spec = out.get("spec")
    if not isinstance(spec, dict):
        causes.append(("spec", "Required value"))
        spec = {}
    out["spec"] = spec = dict(spec)
    causes += [(f"spec.{k}", f'unknown field "{k}"') for k in spec if k not in spec_fields]
    replicas = spec.get("replicas")
    replicas = 1 if replicas is None else replicas
    if isinstance(replicas, bool) or not isinstance(replicas, int):
        causes.append(("spec.replicas", f"Invalid value: {quote(replicas)}: must be an integer"))
    elif replicas < 0:
        causes.append(("spec.replicas", f"Invalid value: {replicas}: must be greater than or "
                       "equal to 0"))
    elif replicas > MAX_REPLICAS:
        causes.append(("spec.replicas", f"Invalid value: {replicas}: must be no more than "
                       f"{MAX_REPLICAS}"))
    spec["replicas"] = replicas
    template = spec.get("template")
    if not isinstance(template, dict):
        causes.append(("spec.template", "Required value"))
        spec["template"] = {"metadata": {}, "spec": {}}
    else:
        causes += [(f"spec.template.{k}", f'unknown field "{k}"')
                   for k in template if k not in _TEMPLATE]
    out.setdefault("apiVersion", API_VERSIONS[kind])
    out.pop("status", None)
    return out


def _check_retention(spec: Object) -> Iterator[Cause]:
    policy = spec.get("persistentVolumeClaimRetentionPolicy")
    if policy is None:
        return
    if not isinstance(policy, dict):
        yield "spec.persistentVolumeClaimRetentionPolicy", "Invalid value: must be a mapping"
        return
    for key, value in policy.items():
        path = f"spec.persistentVolumeClaimRetentionPolicy.{key}"
        if key not in ("whenDeleted", "whenScaled"):
            yield path, f'unknown field "{key}"'
        elif value not in _RETENTION:
            yield path, (f"Unsupported value: {quote(value)}: supported values: "
                         '"Retain", "Delete"')


def _template_labels(spec: Object) -> dict[str, str]:
    template = spec.get("template")
    meta = template.get("metadata") if isinstance(template, dict) else None
    labels = meta.get("labels") if isinstance(meta, dict) else None
    return dict(labels) if isinstance(labels, dict) else {}


def _check_template(workload: Object, claims: list[str], source: str | None) -> None:
    """The pod template, checked as the pod of the first replica would be."""
    pod = _pod_doc(workload, f"{workload['metadata']['name']}-0", claims, 0)
    pod["metadata"].pop("ownerReferences", None)
    try:
        build_pod(pod, source)
    except ManifestError as err:
        raise err.map_fields(_template_path) from None


def _under(prefix: str, field: str) -> str:
    return f"{prefix}.{field}" if field else prefix


def _template_path(field: str) -> str:
    if field.startswith(("spec", "metadata")):
        return f"spec.template.{field}"
    return field


def _raise_if(source: str | None, causes: list[Cause]) -> None:
    if causes:
        raise ManifestError(source, causes)


# -- what the controllers make -----------------------------------------------------------


def owner_reference(workload: Object) -> Object:
    """The reference a workload's pods (and claims it owns) carry to it."""
    return {"apiVersion": workload.get("apiVersion") or API_VERSIONS[workload["kind"]],
            "kind": workload["kind"], "name": workload["metadata"]["name"],
            "uid": workload["metadata"]["uid"], "controller": True,
            "blockOwnerDeletion": True}


def _pod_doc(workload: Object, name: str, claims: list[str], ordinal: int) -> Object:
    template = copy.deepcopy(workload["spec"].get("template") or {})
    meta = dict(template.get("metadata") or {})
    spec = dict(template.get("spec") or {})
    volumes = list(spec.get("volumes") or [])
    have = {v.get("name") for v in volumes if isinstance(v, dict)}
    set_name = workload["metadata"]["name"]
    for claim in claims:  # each claim template is a volume of the pod, as in Kubernetes
        if claim not in have:
            volumes.append({"name": claim, "persistentVolumeClaim": {
                "claimName": claim_name(claim, set_name, ordinal)}})
    if volumes:
        spec["volumes"] = volumes
    metadata = {"name": name, "namespace": workload["metadata"].get("namespace") or "default",
                "labels": dict(meta.get("labels") or {}),
                "annotations": dict(meta.get("annotations") or {}),
                "ownerReferences": [owner_reference(workload)] if "uid" in workload[
                    "metadata"] else []}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def template_pod(workload: Object, name: str) -> Object:
    """The pod document a ReplicationController makes, named ``name``, owned by it."""
    return _pod_doc(workload, name, [], 0)


def claim_templates(workload: Object) -> list[Object]:
    templates = workload["spec"].get("volumeClaimTemplates") or []
    return [t for t in templates if isinstance(t, dict)]


def stateful_pod(workload: Object, ordinal: int) -> Object:
    """Pod ``<set>-<ordinal>`` of a StatefulSet, with its claims as volumes."""
    set_name = workload["metadata"]["name"]
    names = [str((t.get("metadata") or {}).get("name")) for t in claim_templates(workload)]
    pod = _pod_doc(workload, f"{set_name}-{ordinal}", names, ordinal)
    pod["metadata"]["labels"].update({
        "statefulset.kubernetes.io/pod-name": f"{set_name}-{ordinal}",
        "apps.kubernetes.io/pod-index": str(ordinal)})
    pod["spec"].setdefault("hostname", f"{set_name}-{ordinal}")
    return pod


def claim_name(template: str, set_name: str, ordinal: int) -> str:
    """``<template>-<set>-<ordinal>``, as Kubernetes names a replica's claim."""
    return f"{template}-{set_name}-{ordinal}"


def stateful_claim(workload: Object, template: Object, ordinal: int) -> Object:
    """The claim of replica ``ordinal`` made from ``template``; labelled with the set's
    selector labels, as Kubernetes labels it."""
    claim = copy.deepcopy(template)
    meta = dict(claim.get("metadata") or {})
    set_name = workload["metadata"]["name"]
    selector = (workload["spec"].get("selector") or {}).get("matchLabels") or {}
    meta.update(name=claim_name(str(meta.get("name")), set_name, ordinal),
                namespace=workload["metadata"].get("namespace") or "default",
                labels={**(meta.get("labels") or {}), **selector})
    claim.update(apiVersion="v1", kind="PersistentVolumeClaim", metadata=meta)
    claim.pop("status", None)
    return claim


def selector_matches(workload: Object, labels: dict[str, str]) -> bool:
    """Whether a pod with ``labels`` is selected by the workload."""
    selector = workload["spec"].get("selector") or {}
    if workload["kind"] == REPLICATION_CONTROLLER:
        return bool(selector) and all(labels.get(k) == v for k, v in selector.items())
    parsed = LabelSelector.model_validate(selector, by_alias=True, by_name=False)
    return parsed.matches(labels)
