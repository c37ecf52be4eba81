"""Typed Kubernetes v1 objects: the Pod and the parts of it volfs acts on.

The parts volfs acts on (metadata, containers' volume mounts, volumes and their
emptyDir / hostPath / nfs / persistentVolumeClaim sources) are typed. Every other
field that Kubernetes v1 has is accepted and kept as decoded (a mapping, a list or a
scalar), so real manifests apply unchanged; a field Kubernetes does not have is
rejected. These models check each value's own form (types, enumerations, quantities);
rules that span fields (names, paths, references) live in :mod:`volfs.api.validation`.

Construct from Python with snake_case names (``VolumeMount(mount_path="/data")``);
the manifest parser accepts only the camelCase names Kubernetes uses.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from volfs.api.errors import quote
from volfs.api.quantity import parse_quantity

__all__ = [
    "HOST_PATH_TYPES",
    "MEDIA",
    "Container",
    "EmptyDirVolumeSource",
    "HostPathVolumeSource",
    "KubeModel",
    "NFSVolumeSource",
    "ObjectMeta",
    "PersistentVolumeClaimVolumeSource",
    "Pod",
    "PodSpec",
    "Volume",
    "VolumeMount",
    "invalid",
]

MEDIA = ("", "Memory")
"""The emptyDir media volfs supports: disk (``""``) and RAM (``"Memory"``)."""

HOST_PATH_TYPES = (
    "",
    "DirectoryOrCreate",
    "Directory",
    "FileOrCreate",
    "File",
    "Socket",
    "CharDevice",
    "BlockDevice",
)
"""Kubernetes' hostPath types; ``""`` checks nothing."""

Raw = dict[str, Any] | None
RawList = list[Any] | None


def invalid(message: str) -> PydanticCustomError:
    """An error whose message is shown as it is (no pydantic prefix)."""
    return PydanticCustomError("volfs", "{message}", {"message": message})


def _one_of(allowed: tuple[str, ...]) -> Callable[[str], str]:
    """A validator accepting only ``allowed``, failing the way Kubernetes words it."""

    def check(value: str) -> str:
        if value not in allowed:
            supported = ", ".join(quote(a) for a in allowed)
            raise invalid(f"Unsupported value: {quote(value)}: supported values: {supported}")
        return value

    return check


class KubeModel(BaseModel):
    """Base of every model: unknown fields rejected, camelCase aliases, strict types.

    A ``null`` for a known field means "not set", as it does in Kubernetes.
    """

    model_config = ConfigDict(
        extra="forbid", alias_generator=to_camel, populate_by_name=True, strict=True
    )

    @model_validator(mode="before")
    @classmethod
    def _drop_nulls(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        known = _known_keys(cls)
        return {k: v for k, v in data.items() if v is not None or k not in known}


@functools.cache
def _known_keys(model: type[BaseModel]) -> frozenset[str | None]:
    """A model's field names and aliases. Fixed once the class is made, and asked for at
    every validation of every object (pydantic's ``model_fields`` is slow to read):
    worked out once per class."""
    fields = model.model_fields
    return frozenset({f.alias for f in fields.values()} | set(fields))


@functools.cache
def _source_fields(volume: type[Volume]) -> tuple[tuple[str, str], ...]:
    """(field name, camelCase key) of every volume source, in the fields' order: made
    once, read at each of the many ``source_kind()`` calls a pod's volume gets."""
    return tuple((name, info.alias or name) for name, info in volume.model_fields.items()
                 if name not in volume._NOT_SOURCES)


def _timestamp(value: Any) -> Any:
    """YAML decodes an unquoted timestamp to a datetime; Kubernetes keeps RFC 3339 text."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return value.isoformat() + "Z"
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


Timestamp = Annotated[str | None, BeforeValidator(_timestamp)]


class ObjectMeta(KubeModel):
    """``metadata``: name and namespace identify the object; the rest is kept as given."""

    name: str = ""
    generate_name: str | None = None
    namespace: str = "default"
    uid: str | None = None
    resource_version: str | None = None
    generation: int | None = None
    creation_timestamp: Timestamp = None
    deletion_timestamp: Timestamp = None
    deletion_grace_period_seconds: int | None = None
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    owner_references: RawList = None
    finalizers: list[str] | None = None
    managed_fields: RawList = None
    self_link: str | None = None

    @field_validator("namespace")
    @classmethod
    def _default_namespace(cls, value: str) -> str:
        return value or "default"


class VolumeMount(KubeModel):
    """Where a container sees a volume. ``subPathExpr`` parses but is refused by validation."""

    name: str = ""
    mount_path: str = ""
    read_only: bool = False
    sub_path: str | None = None
    sub_path_expr: str | None = None
    mount_propagation: str | None = None
    recursive_read_only: str | None = None


class Container(KubeModel):
    """A container; volfs reads its name and volume mounts and keeps everything else."""

    name: str = ""
    image: str | None = None
    command: list[str] | None = None
    args: list[str] | None = None
    working_dir: str | None = None
    ports: RawList = None
    env_from: RawList = None
    env: RawList = None
    resources: Raw = None
    resize_policy: RawList = None
    restart_policy: str | None = None
    volume_mounts: list[VolumeMount] = []
    volume_devices: RawList = None
    liveness_probe: Raw = None
    readiness_probe: Raw = None
    startup_probe: Raw = None
    lifecycle: Raw = None
    termination_message_path: str | None = None
    termination_message_policy: str | None = None
    image_pull_policy: str | None = None
    security_context: Raw = None
    stdin: bool | None = None
    stdin_once: bool | None = None
    tty: bool | None = None


def _size_limit(value: Any) -> str | int | float:
    """Accept a quantity as written (text or number) once it is known to parse."""
    try:
        parse_quantity(value)
    except ValueError as exc:
        raise invalid(str(exc)) from None
    return value  # type: ignore[no-any-return]


class EmptyDirVolumeSource(KubeModel):
    """Scratch space that lives as long as the pod: on disk (``""``) or in RAM (``"Memory"``)."""

    medium: Annotated[str, AfterValidator(_one_of(MEDIA))] = ""
    size_limit: Annotated[str | int | float | None, PlainValidator(_size_limit)] = None

    def size_limit_bytes(self) -> int | None:
        """The size limit in bytes, or None when there is none."""
        return None if self.size_limit is None else parse_quantity(self.size_limit)


class HostPathVolumeSource(KubeModel):
    """A directory or file of the host; ``type`` says what must (or will) exist there."""

    path: str = ""
    type: Annotated[str, AfterValidator(_one_of(HOST_PATH_TYPES))] = ""


class NFSVolumeSource(KubeModel):
    """An export of an NFS server, mounted directly into the pod."""

    server: str = ""
    path: str = ""
    read_only: bool = False


class PersistentVolumeClaimVolumeSource(KubeModel):
    """A claim in the pod's namespace; the volume is whatever PersistentVolume it binds."""

    claim_name: str = ""
    read_only: bool = False


class Volume(KubeModel):
    """A named volume with one source; with none at all it is an emptyDir, as in Kubernetes."""

    name: str = ""
    host_path: HostPathVolumeSource | None = None
    empty_dir: EmptyDirVolumeSource | None = None
    nfs: NFSVolumeSource | None = None
    persistent_volume_claim: PersistentVolumeClaimVolumeSource | None = None
    gce_persistent_disk: Raw = None
    aws_elastic_block_store: Raw = None
    git_repo: Raw = None
    secret: Raw = None
    iscsi: Raw = None
    glusterfs: Raw = None
    rbd: Raw = None
    flex_volume: Raw = None
    cinder: Raw = None
    cephfs: Raw = None
    flocker: Raw = None
    downward_api: Raw = Field(default=None, alias="downwardAPI")
    fc: Raw = None
    azure_file: Raw = None
    config_map: Raw = None
    vsphere_volume: Raw = None
    quobyte: Raw = None
    azure_disk: Raw = None
    photon_persistent_disk: Raw = None
    projected: Raw = None
    portworx_volume: Raw = None
    scale_io: Raw = Field(default=None, alias="scaleIO")
    storageos: Raw = None
    csi: Raw = None
    ephemeral: Raw = None
    image: Raw = None

    _NOT_SOURCES: ClassVar[frozenset[str]] = frozenset({"name"})

    @model_validator(mode="after")
    def _default_to_empty_dir(self) -> Volume:
        if not self.source_kinds():
            self.empty_dir = EmptyDirVolumeSource()
        return self

    def source_kinds(self) -> list[str]:
        """The camelCase keys of every source that is set (one, once validated)."""
        return [alias for name, alias in _source_fields(type(self))
                if getattr(self, name) is not None]

    def source_kind(self) -> str:
        """The camelCase key of the volume's source: ``"emptyDir"``, ``"configMap"``, ..."""
        return self.source_kinds()[0]

    @property
    def source(self) -> KubeModel | dict[str, Any]:
        """The source: a model for the four kinds volfs serves, the raw mapping otherwise."""
        name = self._field_name(self.source_kind())
        return getattr(self, name)  # type: ignore[no-any-return]

    @classmethod
    def _field_name(cls, alias: str) -> str:
        return next(name for name, known in _source_fields(cls) if known == alias)


class PodSpec(KubeModel):
    """``spec``: volumes and containers are typed; the rest of Kubernetes' PodSpec is kept."""

    volumes: list[Volume] = []
    init_containers: list[Container] = []
    containers: list[Container] = []
    ephemeral_containers: RawList = None
    restart_policy: str | None = None
    termination_grace_period_seconds: int | None = None
    active_deadline_seconds: int | None = None
    dns_policy: str | None = None
    node_selector: dict[str, str] | None = None
    service_account_name: str | None = None
    service_account: str | None = None
    automount_service_account_token: bool | None = None
    node_name: str | None = None
    host_network: bool | None = None
    host_pid: bool | None = Field(default=None, alias="hostPID")
    host_ipc: bool | None = Field(default=None, alias="hostIPC")
    share_process_namespace: bool | None = None
    security_context: Raw = None
    image_pull_secrets: RawList = None
    hostname: str | None = None
    subdomain: str | None = None
    affinity: Raw = None
    scheduler_name: str | None = None
    tolerations: RawList = None
    host_aliases: RawList = None
    priority_class_name: str | None = None
    priority: int | None = None
    dns_config: Raw = None
    readiness_gates: RawList = None
    runtime_class_name: str | None = None
    enable_service_links: bool | None = None
    preemption_policy: str | None = None
    overhead: Raw = None
    topology_spread_constraints: RawList = None
    set_hostname_as_fqdn: bool | None = Field(default=None, alias="setHostnameAsFQDN")
    os: Raw = None
    host_users: bool | None = None
    scheduling_gates: RawList = None
    resource_claims: RawList = None
    resources: Raw = None


class Pod(KubeModel):
    """A v1 Pod. ``status`` is accepted on input (so saved objects re-apply) and dropped."""

    api_version: Literal["v1"] = "v1"
    kind: Literal["Pod"] = "Pod"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: PodSpec = Field(default_factory=PodSpec)
    status: dict[str, Any] | None = None

    @field_validator("status", mode="plain")
    @classmethod
    def _ignore_status(cls, value: Any) -> None:
        return None

    def to_k8s(self) -> dict[str, Any]:
        """The pod as a JSON-able Kubernetes object: camelCase keys, unset fields left out.

        ``parse_object(pod.to_k8s())`` gives back an equal Pod.
        """
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
