"""CSI volumes as volfs records them: ids, kinds and their parameters, capacity, and the
durable record (pure: no I/O).

A volume id is volfs's own, ``<kind>.<32 hex digits>``, and every request's id is
checked against that form before it is used: an id is a directory name under the state
dir and the mount, so nothing else (``..``, ``/``) may ever reach a path.

The record is one object of kind ``CsiVolume`` in the state database (named by its id),
written before the volume's storage is made: a daemon killed at any point finds it again,
and the same CreateVolume name gives the same id.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

import grpc

from volfs.csi import csi_pb2 as pb
from volfs.csi.errors import CsiError

RECORD_KIND = "CsiVolume"
SCRATCH = "scratch"
NFS = "nfs"
KINDS = (SCRATCH, NFS)
MEDIA = ("", "Memory")
# What the CO adds to a CreateVolume's parameters (external-provisioner's
# --extra-create-metadata): the claim's and PV's names, not settings of the volume.
CO_PREFIX = "csi.storage.k8s.io/"
PVC_NAMESPACE = "csi.storage.k8s.io/pvc/namespace"
PVC_NAME = "csi.storage.k8s.io/pvc/name"
MAX_NAME = 128

_ID = re.compile(r"(scratch|nfs)\.[0-9a-f]{32}")
# Control characters the spec bans from names (all but the common whitespace ones).
_BANNED = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")

Mode = pb.VolumeCapability.AccessMode
READ_ONLY_MODES = (Mode.SINGLE_NODE_READER_ONLY, Mode.MULTI_NODE_READER_ONLY)
MULTI_NODE_MODES = (Mode.MULTI_NODE_READER_ONLY, Mode.MULTI_NODE_SINGLE_WRITER,
                    Mode.MULTI_NODE_MULTI_WRITER)


def new_volume_id(kind: str) -> str:
    return f"{kind}.{secrets.token_hex(16)}"


def checked_id(volume_id: str, what: str = "volume_id") -> str:
    """``volume_id`` if it has volfs's form. Missing: INVALID_ARGUMENT; any other
    string: NOT_FOUND (volfs never made it, so no such volume exists)."""
    if not volume_id:
        raise CsiError(grpc.StatusCode.INVALID_ARGUMENT, f"{what} is required")
    if not _ID.fullmatch(volume_id):
        raise CsiError(grpc.StatusCode.NOT_FOUND, f"no volume {volume_id[:80]!r}")
    return volume_id


def is_volume_id(text: str) -> bool:
    return _ID.fullmatch(text) is not None


def kind_of(volume_id: str) -> str:
    return volume_id.partition(".")[0]


def checked_name(name: str) -> str:
    if not name:
        raise CsiError(grpc.StatusCode.INVALID_ARGUMENT, "name is required")
    if len(name) > MAX_NAME or _BANNED.search(name):
        raise CsiError(grpc.StatusCode.INVALID_ARGUMENT,
                       f"name: at most {MAX_NAME} characters, no control characters")
    return name


# -- parameters ----------------------------------------------------------------------


@dataclass(frozen=True)
class Parameters:
    """A CreateVolume's parameters: ``kind`` and that kind's own settings.

    ``scratch``: ``medium`` ("" on the state dir's disk, "Memory" on tmpfs), as an
    EmptyDir's. ``nfs``: a StorageClass's parameters for ``volfs.io/nfs`` (``server``,
    ``share``, ``subDir``, ``onDelete``) and ``mountOptions`` (comma-separated).
    """

    kind: str
    medium: str = ""
    nfs: dict[str, str] = field(default_factory=dict)
    mount_options: tuple[str, ...] = ()
    claim_namespace: str = ""
    claim_name: str = ""

    def settings(self) -> dict[str, Any]:
        """What makes two volumes the same kind of volume (the CO's names aside)."""
        return {"kind": self.kind, "medium": self.medium, "nfs": dict(sorted(self.nfs.items())),
                "mountOptions": list(self.mount_options)}


def parse_parameters(params: dict[str, str]) -> Parameters:
    """CreateVolume's (or GetCapacity's) parameters; INVALID_ARGUMENT naming the bad one."""
    own = {k: v for k, v in params.items() if not k.startswith(CO_PREFIX)}
    kind = own.pop("kind", SCRATCH)
    if kind not in KINDS:
        raise _invalid(f"parameters.kind: {kind!r}: supported: {', '.join(KINDS)}")
    claim = (params.get(PVC_NAMESPACE, ""), params.get(PVC_NAME, ""))
    if kind == SCRATCH:
        medium = own.pop("medium", "")
        if medium not in MEDIA:
            raise _invalid(f"parameters.medium: {medium!r}: supported: \"\", \"Memory\"")
        if own:
            raise _invalid(f"parameters: {', '.join(sorted(own))}: unknown for kind scratch "
                           "(known: kind, medium)")
        return Parameters(SCRATCH, medium=medium)
    options = tuple(o.strip() for o in own.pop("mountOptions", "").split(",") if o.strip())
    return Parameters(NFS, nfs=own, mount_options=options,
                      claim_namespace=claim[0], claim_name=claim[1])


def _invalid(message: str) -> CsiError:
    return CsiError(grpc.StatusCode.INVALID_ARGUMENT, message)


# -- capacity ------------------------------------------------------------------------


def wanted_capacity(capacity_range: pb.CapacityRange | None) -> int | None:
    """The limit a volume gets: ``required_bytes``, else ``limit_bytes``; None (no
    limit) when neither is given. OUT_OF_RANGE for a range no size satisfies."""
    if capacity_range is None:
        return None
    required, limit = capacity_range.required_bytes, capacity_range.limit_bytes
    if required < 0 or limit < 0:
        raise CsiError(grpc.StatusCode.OUT_OF_RANGE, "capacity_range: bytes must not be negative")
    if required and limit and required > limit:
        raise CsiError(grpc.StatusCode.OUT_OF_RANGE,
                       f"capacity_range: required_bytes {required} > limit_bytes {limit}")
    return required or limit or None


def fits(capacity: int | None, capacity_range: pb.CapacityRange | None) -> bool:
    """Whether a volume of ``capacity`` (None: unlimited) satisfies ``capacity_range``."""
    if capacity_range is None:
        return True
    required, limit = capacity_range.required_bytes, capacity_range.limit_bytes
    if capacity is None:
        return not required and not limit
    return capacity >= required and (not limit or capacity <= limit)


# -- capabilities ----------------------------------------------------------------------


def capability_problem(kind: str, capability: pb.VolumeCapability) -> str | None:
    """Why volfs cannot serve ``capability`` for a volume of ``kind``, or None."""
    if capability.WhichOneof("access_type") != "mount":
        return "only mount access is served (a FUSE directory, no block device)"
    mode = capability.access_mode.mode
    if mode == Mode.UNKNOWN:
        return "access_mode.mode is required"
    if kind == SCRATCH and mode in MULTI_NODE_MODES:
        return f"a scratch volume lives on one node; {Mode.Mode.Name(mode)} is not served"
    return None


def checked_capabilities(kind: str, capabilities: Any) -> None:
    if not capabilities:
        raise _invalid("volume_capabilities are required")
    for capability in capabilities:
        problem = capability_problem(kind, capability)
        if problem:
            raise _invalid(f"volume_capabilities: {problem}")


def flags_digest(flags: list[str]) -> str:
    """Mount flags as recorded: a digest, since flags may carry secrets (the spec)."""
    return hashlib.sha256("\0".join(flags).encode()).hexdigest()


# -- the record ----------------------------------------------------------------------


@dataclass
class Publication:
    """One NodePublishVolume in force: how the target was mounted."""

    read_only: bool
    flags: str  # flags_digest of the mount_flags
    mode: int  # the access mode asked for

    def to_json(self) -> dict[str, Any]:
        return {"readOnly": self.read_only, "flags": self.flags, "mode": self.mode}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Publication:
        return cls(bool(data["readOnly"]), str(data["flags"]), int(data["mode"]))


@dataclass
class VolumeRecord:
    """A CSI volume: what CreateVolume made, and where NodePublishVolume put it."""

    volume_id: str
    name: str
    parameters: Parameters
    capacity: int | None  # the enforced limit in bytes; None: none
    nfs_spec: dict[str, Any] = field(default_factory=dict)  # the provisioned source
    nfs_annotations: dict[str, str] = field(default_factory=dict)
    published: dict[str, Publication] = field(default_factory=dict)  # target -> how

    @property
    def kind(self) -> str:
        return self.parameters.kind

    def context(self) -> dict[str, str]:
        """The volume_context: static, no secrets."""
        return {"kind": self.kind}

    def to_volume(self) -> pb.Volume:
        return pb.Volume(volume_id=self.volume_id, capacity_bytes=self.capacity or 0,
                         volume_context=self.context())

    def to_object(self) -> dict[str, Any]:
        p = self.parameters
        return {
            "apiVersion": "volfs.io/v1", "kind": RECORD_KIND,
            "metadata": {"name": self.volume_id, "namespace": "", "uid": self.volume_id},
            "spec": {"name": self.name, **p.settings(), "capacityBytes": self.capacity,
                     "claim": {"namespace": p.claim_namespace, "name": p.claim_name},
                     "nfsSource": self.nfs_spec, "nfsAnnotations": self.nfs_annotations},
            "status": {"published": {t: pub.to_json() for t, pub in self.published.items()}},
        }

    @classmethod
    def from_object(cls, obj: dict[str, Any]) -> VolumeRecord:
        spec = obj["spec"]
        claim = spec.get("claim", {})
        params = Parameters(spec["kind"], medium=spec.get("medium", ""),
                            nfs=dict(spec.get("nfs", {})),
                            mount_options=tuple(spec.get("mountOptions", [])),
                            claim_namespace=claim.get("namespace", ""),
                            claim_name=claim.get("name", ""))
        published = {target: Publication.from_json(data)
                     for target, data in obj.get("status", {}).get("published", {}).items()}
        return cls(obj["metadata"]["name"], spec["name"], params, spec.get("capacityBytes"),
                   dict(spec.get("nfsSource", {})), dict(spec.get("nfsAnnotations", {})),
                   published)
