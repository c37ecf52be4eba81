"""The NFS kind of PersistentVolume: served by volfs's own NFS client, provisioned as
directories on a share, deleted (or archived) and recycled there.

A StorageClass with ``provisioner: volfs.io/nfs`` names a share (``server``,
``share``) and where each claim's directory goes (``subDir``, a template of
``${pvc.metadata.namespace}``, ``${pvc.metadata.name}``, ``${pv.metadata.name}``);
``onDelete`` says what reclaim policy Delete does to it: ``delete``, ``retain`` or
``archive`` (renamed ``archived-<name>``). The annotations of a provisioned PV record
the share and directory, so that deleting it needs nothing but the PV.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Protocol

from volfs.api.errors import Cause, quote
from volfs.api.storage import (
    PersistentVolume,
    PersistentVolumeClaim,
    StorageClass,
)
from volfs.persistent.plugins import (
    PROVISIONED_BY,
    Object,
    Provisioned,
    ReclaimFailed,
    SourceRefused,
)
from volfs.stores.nfs import NfsStore, ServerUnreachable, open_store
from volfs.stores.progress import Progress

NFS_KIND = "kubernetes.io~nfs"
NFS_PROVISIONER = "volfs.io/nfs"
PARAMETERS = ("server", "share", "subDir", "onDelete", "mountOptions")
ON_DELETE = ("delete", "retain", "archive")
SUBDIR_VARIABLES = ("pvc.metadata.namespace", "pvc.metadata.name", "pv.metadata.name")
SHARE_ANNOTATION = "volfs.io/share"
SUBDIR_ANNOTATION = "volfs.io/sub-dir"
ON_DELETE_ANNOTATION = "volfs.io/on-delete"
DEFAULT_SUBDIR = "${pvc.metadata.namespace}-${pvc.metadata.name}-${pv.metadata.name}"
_TEMPLATE_VAR = re.compile(r"\$\{([^}]*)\}")


class ShareOps(Protocol):
    """Directory work on an NFS share, for provisioning and reclaim (never blocks the loop;
    :class:`volfs.stores.nfs.NfsShares`)."""

    async def make_dir(self, server: str, share: str, sub_dir: str,
                       mount_options: list[str]) -> None: ...
    async def remove_dir(self, server: str, share: str, sub_dir: str,
                         mount_options: list[str], progress: Progress | None = None
                         ) -> None: ...
    async def rename_dir(self, server: str, share: str, sub_dir: str, new_sub_dir: str,
                         mount_options: list[str]) -> None: ...
    async def scrub_dir(self, server: str, path: str, mount_options: list[str],
                        progress: Progress | None = None) -> None: ...


class NfsSource:
    """PersistentVolumes with ``nfs:``: opened, provisioned, deleted and recycled."""

    source_kind = "nfs"
    kind_dir = NFS_KIND
    provisioner = NFS_PROVISIONER

    def __init__(self, shares: ShareOps) -> None:
        self._shares = shares

    async def open_store(self, pv: PersistentVolume) -> NfsStore:
        nfs = pv.spec.nfs
        assert nfs is not None
        try:
            return await open_store(nfs.server, nfs.path, pv.spec.mount_options,
                                    capacity_bytes=pv.spec.capacity_bytes(),
                                    read_only=nfs.read_only)
        except ServerUnreachable as exc:
            raise SourceRefused(f"nfs {nfs.server}:{nfs.path}: {exc}") from None
        except OSError as exc:
            raise SourceRefused(f"nfs {nfs.server}:{nfs.path}: {exc.strerror or exc}") from None

    def check_class(self, sc: StorageClass) -> list[Cause]:
        return list(_class_causes(sc.parameters))

    async def provision(self, claim: PersistentVolumeClaim, sc: StorageClass,
                        pv_name: str) -> Provisioned:
        params = sc.parameters
        share = params["share"].rstrip("/") or "/"
        options = list(sc.mount_options)
        sub_dir = expand_sub_dir(params.get("subDir", DEFAULT_SUBDIR), claim, pv_name)
        await self._shares.make_dir(params["server"], share, sub_dir, options)
        return Provisioned(
            spec={"nfs": {"server": params["server"], "path": f"{share.rstrip('/')}/{sub_dir}"},
                  "mountOptions": options},
            annotations={SHARE_ANNOTATION: share, SUBDIR_ANNOTATION: sub_dir,
                         ON_DELETE_ANNOTATION: params.get("onDelete", "delete")})

    def can_delete(self, pv: Object) -> bool:
        return pv["metadata"].get("annotations", {}).get(PROVISIONED_BY) == NFS_PROVISIONER

    async def delete(self, pv: Object, progress: Progress) -> str:
        annotations = pv["metadata"].get("annotations", {})
        server = pv["spec"]["nfs"]["server"]
        share, sub_dir = annotations[SHARE_ANNOTATION], annotations[SUBDIR_ANNOTATION]
        options = pv["spec"].get("mountOptions", [])
        on_delete = annotations.get(ON_DELETE_ANNOTATION, "delete")
        try:
            if on_delete == "delete":
                await self._shares.remove_dir(server, share, sub_dir, options, progress)
                return f"{share}/{sub_dir} removed"
            if on_delete == "archive":
                parent, _, base = sub_dir.rpartition("/")
                archived = f"{parent}/archived-{base}" if parent else f"archived-{base}"
                await self._shares.rename_dir(server, share, sub_dir, archived, options)
                return f"{share}/{sub_dir} archived as {share}/{archived}"
        except OSError as exc:
            raise ReclaimFailed(f"{on_delete} of {sub_dir}: {exc}") from None
        return f"{share}/{sub_dir} retained"

    async def recycle(self, pv: Object, progress: Progress) -> str:
        nfs = pv["spec"]["nfs"]
        try:
            await self._shares.scrub_dir(nfs["server"], nfs["path"],
                                         pv["spec"].get("mountOptions", []), progress)
        except OSError as exc:
            raise ReclaimFailed(str(exc)) from None
        return f"{nfs['path']} emptied"


def _class_causes(params: dict[str, str]) -> Iterator[Cause]:
    for key in sorted(set(params) - set(PARAMETERS)):
        yield f"parameters.{key}", f'unknown parameter "{key}"'
    if not params.get("server"):
        yield "parameters.server", "Required value"
    share = params.get("share", "")
    if not share.startswith("/"):
        yield "parameters.share", (f"Invalid value: {quote(share)}: must be an absolute "
                                   "export path" if share else "Required value: an absolute "
                                   "export path")
    elif ".." in share.split("/"):
        yield "parameters.share", f"Invalid value: {quote(share)}: must not contain '..'"
    sub_dir = params.get("subDir", "")
    if sub_dir.startswith("/") or ".." in sub_dir.split("/"):
        yield "parameters.subDir", (f"Invalid value: {quote(sub_dir)}: must be a relative path "
                                    "without '..'")
    for variable in _TEMPLATE_VAR.findall(sub_dir):
        if variable not in SUBDIR_VARIABLES:
            yield "parameters.subDir", (f"unknown variable ${{{variable}}}: use "
                                        f"{', '.join('${' + v + '}' for v in SUBDIR_VARIABLES)}")
    if params.get("onDelete", "delete") not in ON_DELETE:
        yield "parameters.onDelete", (f"Unsupported value: {quote(params['onDelete'])}: "
                                      f"supported values: {', '.join(map(quote, ON_DELETE))}")


def expand_sub_dir(template: str, claim: PersistentVolumeClaim, pv_name: str) -> str:
    """The subDir template with ``${pvc.metadata.namespace}``, ``${pvc.metadata.name}``,
    ``${pv.metadata.name}`` replaced; nested paths (``a/${...}/b``) are allowed."""
    values = {"pvc.metadata.namespace": claim.metadata.namespace,
              "pvc.metadata.name": claim.metadata.name, "pv.metadata.name": pv_name}

    def replace(match: re.Match[str]) -> str:
        if match.group(1) not in values:
            raise ValueError(f"unknown variable ${{{match.group(1)}}} in subDir")
        return values[match.group(1)]

    expanded = _TEMPLATE_VAR.sub(replace, template).strip("/")
    if not expanded or ".." in expanded.split("/"):
        raise ValueError(f"subDir {template!r} expands to {expanded!r}")
    return expanded
