"""Kubernetes manifests parsed and validated into typed objects (pure: no I/O).

>>> pods = load_manifests(open("pod.yaml").read(), "pod.yaml")  # doctest: +SKIP
>>> pods[0].spec.volumes[0].source_kind()  # doctest: +SKIP
'emptyDir'
"""

from volfs.api.errors import ManifestError
from volfs.api.manifests import load_manifests, parse_object
from volfs.api.models import (
    Container,
    EmptyDirVolumeSource,
    HostPathVolumeSource,
    NFSVolumeSource,
    ObjectMeta,
    PersistentVolumeClaimVolumeSource,
    Pod,
    PodSpec,
    Volume,
    VolumeMount,
)
from volfs.api.quantity import format_quantity, parse_quantity

__all__ = [
    "Container",
    "EmptyDirVolumeSource",
    "HostPathVolumeSource",
    "ManifestError",
    "NFSVolumeSource",
    "ObjectMeta",
    "PersistentVolumeClaimVolumeSource",
    "Pod",
    "PodSpec",
    "Volume",
    "VolumeMount",
    "format_quantity",
    "load_manifests",
    "parse_object",
    "parse_quantity",
]
