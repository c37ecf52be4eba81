"""Kubernetes manifests parsed and validated into typed objects (pure: no I/O).

>>> pods = load_manifests(open("pod.yaml").read(), "pod.yaml")  # doctest: +SKIP
>>> pods[0].spec.volumes[0].source_kind()  # doctest: +SKIP
'emptyDir'
"""

from volfs.api.errors import ManifestError
from volfs.api.manifests import ApiObject, load_manifests, parse_object, parse_pod
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
from volfs.api.storage import PersistentVolume, PersistentVolumeClaim, StorageClass

__all__ = [
    "ApiObject",
    "Container",
    "EmptyDirVolumeSource",
    "HostPathVolumeSource",
    "ManifestError",
    "NFSVolumeSource",
    "ObjectMeta",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "PersistentVolumeClaimVolumeSource",
    "Pod",
    "PodSpec",
    "Volume",
    "VolumeMount",
    "format_quantity",
    "load_manifests",
    "StorageClass",
    "parse_object",
    "parse_pod",
    "parse_quantity",
]
