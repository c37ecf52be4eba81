"""PersistentVolume, PersistentVolumeClaim and StorageClass: typed, validated.

The same two passes as pods (:mod:`volfs.api.validation`): decode into the models
(unknown fields refused), then check the rules that span fields. PVs and classes are
cluster-scoped: their ``metadata.namespace`` is ``""``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, PlainValidator, ValidationError, field_validator

from volfs.api.errors import Cause, ManifestError, quote
from volfs.api.models import KubeModel, NFSVolumeSource, ObjectMeta, _one_of, _size_limit
from volfs.api.quantity import parse_quantity
from volfs.api.validation import check_label, check_subdomain, decode_causes

__all__ = [
    "ACCESS_MODES",
    "PV_SOURCES",
    "ClaimRef",
    "ClusterObjectMeta",
    "LabelSelector",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "StorageClass",
    "build_claim",
    "build_storage_class",
    "build_volume",
    "claims_of",
    "volume_source_kind",
]

ACCESS_MODES = ("ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod")
RECLAIM_POLICIES = ("Retain", "Delete", "Recycle")
# The PersistentVolume source fields Kubernetes defines that volfs parses. Which of them
# are served is the PV-source plugins' to say (volfs.persistent), not the API's.
PV_SOURCES = ("nfs", "hostPath", "local", "csi", "iscsi", "fc", "cephfs", "rbd")
NO_PROVISIONER = "kubernetes.io/no-provisioner"
DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"

Quantity = Annotated[str | int | float, PlainValidator(_size_limit)]
AccessMode = Annotated[str, AfterValidator(_one_of(ACCESS_MODES))]


class ClusterObjectMeta(ObjectMeta):
    """``metadata`` of a cluster-scoped object: no namespace."""

    namespace: str = ""

    @field_validator("namespace")
    @classmethod
    def _default_namespace(cls, value: str) -> str:
        return ""


class ClaimRef(KubeModel):
    """A PV's reference to the claim it is (or will be) bound to."""

    kind: str | None = None
    api_version: str | None = None
    namespace: str = "default"
    name: str = ""
    uid: str | None = None
    resource_version: str | None = None
    field_path: str | None = None


class PersistentVolumeSpec(KubeModel):
    capacity: dict[str, Quantity] = {}
    access_modes: list[AccessMode] = []
    storage_class_name: str = ""
    persistent_volume_reclaim_policy: Annotated[
        str, AfterValidator(_one_of(RECLAIM_POLICIES))] = "Retain"
    nfs: NFSVolumeSource | None = None
    mount_options: list[str] = []
    claim_ref: ClaimRef | None = None
    volume_mode: Literal["Filesystem"] = "Filesystem"
    node_affinity: dict[str, Any] | None = None
    # Other Kubernetes PV sources parse, so the refusal can name them.
    host_path: dict[str, Any] | None = None
    local: dict[str, Any] | None = None
    csi: dict[str, Any] | None = None
    iscsi: dict[str, Any] | None = None
    fc: dict[str, Any] | None = None
    cephfs: dict[str, Any] | None = None
    rbd: dict[str, Any] | None = None

    def capacity_bytes(self) -> int:
        return parse_quantity(self.capacity.get("storage", 0))

    def source_kind(self) -> str | None:
        """The source field that is set ("nfs", ...), as the PV-source plugins know it."""
        for name in PV_SOURCES:
            if getattr(self, _snake(name)) is not None:
                return name
        return None


class PersistentVolume(KubeModel):
    api_version: Literal["v1"] = "v1"
    kind: Literal["PersistentVolume"] = "PersistentVolume"
    metadata: ClusterObjectMeta = Field(default_factory=ClusterObjectMeta)
    spec: PersistentVolumeSpec = Field(default_factory=PersistentVolumeSpec)
    status: dict[str, Any] | None = None

    def to_k8s(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class LabelSelectorRequirement(KubeModel):
    key: str = ""
    operator: Annotated[str, AfterValidator(_one_of(("In", "NotIn", "Exists", "DoesNotExist")))]
    values: list[str] = []


class LabelSelector(KubeModel):
    match_labels: dict[str, str] = {}
    match_expressions: list[LabelSelectorRequirement] = []

    def matches(self, labels: dict[str, str]) -> bool:
        """Kubernetes' semantics: every label and every expression must hold."""
        if any(labels.get(k) != v for k, v in self.match_labels.items()):
            return False
        for req in self.match_expressions:
            present = req.key in labels
            if req.operator == "In" and (not present or labels[req.key] not in req.values):
                return False
            if req.operator == "NotIn" and present and labels[req.key] in req.values:
                return False
            if req.operator == "Exists" and not present:
                return False
            if req.operator == "DoesNotExist" and present:
                return False
        return True


class ResourceRequirements(KubeModel):
    requests: dict[str, Quantity] = {}
    limits: dict[str, Quantity] = {}


class PersistentVolumeClaimSpec(KubeModel):
    access_modes: list[AccessMode] = []
    resources: ResourceRequirements = Field(default_factory=ResourceRequirements)
    # None (unset) means "the default class"; "" means "no class". They differ.
    storage_class_name: str | None = None
    selector: LabelSelector | None = None
    volume_name: str | None = None
    volume_mode: Literal["Filesystem"] = "Filesystem"
    data_source: dict[str, Any] | None = None
    data_source_ref: dict[str, Any] | None = None
    volume_attributes_class_name: str | None = None

    def request_bytes(self) -> int:
        return parse_quantity(self.resources.requests.get("storage", 0))


class PersistentVolumeClaim(KubeModel):
    api_version: Literal["v1"] = "v1"
    kind: Literal["PersistentVolumeClaim"] = "PersistentVolumeClaim"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: PersistentVolumeClaimSpec = Field(default_factory=PersistentVolumeClaimSpec)
    status: dict[str, Any] | None = None

    def to_k8s(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class StorageClass(KubeModel):
    api_version: Literal["storage.k8s.io/v1"] = "storage.k8s.io/v1"
    kind: Literal["StorageClass"] = "StorageClass"
    metadata: ClusterObjectMeta = Field(default_factory=ClusterObjectMeta)
    provisioner: str = ""
    parameters: dict[str, str] = {}
    reclaim_policy: Annotated[str, AfterValidator(_one_of(("Delete", "Retain")))] = "Delete"
    mount_options: list[str] = []
    allow_volume_expansion: bool | None = None
    volume_binding_mode: Annotated[
        str, AfterValidator(_one_of(("Immediate", "WaitForFirstConsumer")))] = "Immediate"
    allowed_topologies: list[Any] | None = None

    def is_default(self) -> bool:
        return self.metadata.annotations.get(DEFAULT_CLASS_ANNOTATION) == "true"

    def to_k8s(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


# -- building: decode, then the rules that span fields -------------------------------


def volume_source_kind(spec: Mapping[str, Any]) -> str | None:
    """The source field set in a stored PV's ``spec`` ("nfs", ...), or None."""
    return next((name for name in PV_SOURCES if spec.get(name) is not None), None)


def claims_of(pod: Mapping[str, Any]) -> list[str]:
    """The claim names a stored Pod object's volumes give (``persistentVolumeClaim``)."""
    volumes = (pod.get("spec") or {}).get("volumes") or []
    return [str(v["persistentVolumeClaim"].get("claimName"))
            for v in volumes if isinstance(v.get("persistentVolumeClaim"), dict)]


def _decode(model: type[KubeModel], doc: dict[str, Any], source: str | None) -> Any:
    try:
        return model.model_validate(doc, by_alias=True, by_name=False)
    except ValidationError as exc:
        raise ManifestError(source, decode_causes(exc, doc)) from None


def _raise_if(source: str | None, causes: list[Cause]) -> None:
    if causes:
        raise ManifestError(source, causes)


def build_volume(doc: dict[str, Any], source: str | None) -> PersistentVolume:
    pv: PersistentVolume = _decode(PersistentVolume, doc, source)
    _raise_if(source, list(_check_volume(pv)))
    return pv


def build_claim(doc: dict[str, Any], source: str | None) -> PersistentVolumeClaim:
    pvc: PersistentVolumeClaim = _decode(PersistentVolumeClaim, doc, source)
    _raise_if(source, list(_check_claim(pvc)))
    return pvc


def build_storage_class(doc: dict[str, Any], source: str | None) -> StorageClass:
    sc: StorageClass = _decode(StorageClass, doc, source)
    _raise_if(source, list(_check_class(sc)))
    return sc


def _check_name(meta: ObjectMeta) -> Iterator[Cause]:
    if not meta.name:
        yield "metadata.name", "Required value"
    else:
        yield from check_subdomain("metadata.name", meta.name)
    if meta.namespace:
        yield from check_label("metadata.namespace", meta.namespace)


def _check_volume(pv: PersistentVolume) -> Iterator[Cause]:
    yield from _check_name(pv.metadata)
    spec = pv.spec
    if "storage" not in spec.capacity:
        yield "spec.capacity.storage", "Required value"
    if not spec.access_modes:
        yield "spec.accessModes", "Required value"
    sources = [k for k in PV_SOURCES if getattr(spec, _snake(k)) is not None]
    if not sources:
        yield "spec", f"Required value: a volume source ({', '.join(PV_SOURCES)})"
    elif len(sources) > 1:
        yield f"spec.{sources[1]}", "Forbidden: may not specify more than 1 volume type"
    if spec.nfs is not None:
        if not spec.nfs.server:
            yield "spec.nfs.server", "Required value"
        if not spec.nfs.path.startswith("/"):
            yield "spec.nfs.path", (f"Invalid value: {quote(spec.nfs.path)}: must be an "
                                    "absolute path")
        if ".." in spec.nfs.path.split("/"):
            yield "spec.nfs.path", f"Invalid value: {quote(spec.nfs.path)}: must not contain '..'"
    if spec.claim_ref is not None and not spec.claim_ref.name:
        yield "spec.claimRef.name", "Required value"
    yield from _check_mount_options("spec.mountOptions", spec.mount_options)


def _check_claim(pvc: PersistentVolumeClaim) -> Iterator[Cause]:
    yield from _check_name(pvc.metadata)
    spec = pvc.spec
    if not spec.access_modes:
        yield "spec.accessModes", "Required value"
    if "storage" not in spec.resources.requests:
        yield "spec.resources.requests.storage", "Required value"
    if "ReadWriteOncePod" in spec.access_modes and len(spec.access_modes) > 1:
        yield "spec.accessModes", ("Forbidden: may not use ReadWriteOncePod with other "
                                   "access modes")


def _check_class(sc: StorageClass) -> Iterator[Cause]:
    """What every class needs; its provisioner's plugin checks the rest (the parameters)
    when the class is created, since only the plugin knows them."""
    yield from _check_name(sc.metadata)
    if not sc.provisioner:
        yield "provisioner", "Required value"


def _check_mount_options(path: str, options: list[str]) -> Iterator[Cause]:
    known = {"nfsvers", "vers", "ro", "rw", "hard", "soft", "timeo", "retrans", "port",
             "mountport", "noac", "actimeo", "proto", "tcp", "nolock", "noatime", "sec"}
    for i, option in enumerate(options):
        key = option.split("=", 1)[0]
        if key not in known:
            yield f"{path}[{i}]", f"Unsupported value: {quote(option)}"


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name)
