"""CSI's Node service: bind-mount a volume's directory under the volfs mount onto the
CO's target path (read-only by a remount when asked), undo it, and report usage.

The bind's source is ``<root>/csi/<id>``, so every write through the target goes
through volfs: its limit (ENOSPC), usage and read-only checks hold there too.
No stage/unstage: a FUSE directory needs nothing per node before publishing.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import subprocess
from pathlib import Path

import grpc
import trio

from volfs.csi import csi_pb2 as pb
from volfs.csi.errors import CsiError, InFlight, not_found, required
from volfs.csi.storage import CsiVolumes, StorageFailed
from volfs.csi.volumes import (
    READ_ONLY_MODES,
    Mode,
    Publication,
    VolumeRecord,
    capability_problem,
    checked_id,
    flags_digest,
)
from volfs.stores.base import statfs_or_none

log = logging.getLogger(__name__)

# One writer through one target (ReadWriteOncePod): a second target is refused.
SINGLE_TARGET_MODES = (Mode.SINGLE_NODE_SINGLE_WRITER,)


class Node:
    def __init__(self, volumes: CsiVolumes, in_flight: InFlight, node_id: str = "") -> None:
        self._volumes = volumes
        self._in_flight = in_flight
        self.node_id = node_id or socket.gethostname()

    async def NodePublishVolume(self, request: pb.NodePublishVolumeRequest
                                ) -> pb.NodePublishVolumeResponse:
        volume_id = checked_id(request.volume_id)
        target = _target(request.target_path)
        if not request.HasField("volume_capability"):
            raise required("volume_capability")
        capability = request.volume_capability
        with self._in_flight.hold(volume_id):
            record = await self._record(volume_id)
            problem = capability_problem(record.kind, capability)
            if problem:
                raise CsiError(grpc.StatusCode.INVALID_ARGUMENT, f"volume_capability: {problem}")
            mode = capability.access_mode.mode
            flags = list(capability.mount.mount_flags)
            wanted = Publication(request.readonly or mode in READ_ONLY_MODES,
                                 flags_digest(flags), mode)
            _check_compatible(record, str(target), wanted)
            try:
                await self._volumes.serve(record)
            except StorageFailed as exc:
                raise CsiError(grpc.StatusCode.UNAVAILABLE, str(exc)) from None
            if str(target) not in record.published or not await _live_mount(target):
                await _bind(self._volumes.mount_path(volume_id), target, wanted.read_only, flags)
            record.published[str(target)] = wanted
            await self._volumes.save(record)
        return pb.NodePublishVolumeResponse()

    async def NodeUnpublishVolume(self, request: pb.NodeUnpublishVolumeRequest
                                  ) -> pb.NodeUnpublishVolumeResponse:
        volume_id = checked_id(request.volume_id)
        target = _target(request.target_path)
        with self._in_flight.hold(volume_id):
            record = await self._record(volume_id)
            await _unbind(target)
            if record.published.pop(str(target), None) is not None:
                await self._volumes.save(record)
        return pb.NodeUnpublishVolumeResponse()

    async def NodeGetVolumeStats(self, request: pb.NodeGetVolumeStatsRequest
                                 ) -> pb.NodeGetVolumeStatsResponse:
        volume_id = checked_id(request.volume_id)
        if not request.volume_path:
            raise required("volume_path")
        record = await self._record(volume_id)
        if str(Path(request.volume_path)) not in record.published:
            raise CsiError(grpc.StatusCode.NOT_FOUND,
                           f"volume {volume_id} is not published at {request.volume_path}")
        store = self._volumes.store(volume_id)
        if store is None:
            raise CsiError(grpc.StatusCode.UNAVAILABLE, f"volume {volume_id} is not served now")
        used = store.usage.used  # volfs's live count, not the backing filesystem's
        fs = await statfs_or_none(store)
        if store.usage.limit is not None:
            total = store.usage.limit
        else:
            total = used + (fs.f_bavail * fs.f_frsize if fs else 0)
        usage = [pb.VolumeUsage(unit=pb.VolumeUsage.BYTES, total=total, used=used,
                                available=max(0, total - used))]
        if fs is not None and fs.f_files:
            # Inodes are the backing filesystem's (an NFS share's FSSTAT), as a kubelet
            # reports them for its own EmptyDirs and PVCs: volfs counts bytes, not files.
            usage.append(pb.VolumeUsage(unit=pb.VolumeUsage.INODES, total=fs.f_files,
                                        used=max(0, fs.f_files - fs.f_ffree),
                                        available=fs.f_favail))
        return pb.NodeGetVolumeStatsResponse(usage=usage)

    async def NodeGetCapabilities(self, request: pb.NodeGetCapabilitiesRequest
                                  ) -> pb.NodeGetCapabilitiesResponse:
        rpc = pb.NodeServiceCapability.RPC
        return pb.NodeGetCapabilitiesResponse(capabilities=[
            pb.NodeServiceCapability(rpc=rpc(type=rpc.GET_VOLUME_STATS))])

    async def NodeGetInfo(self, request: pb.NodeGetInfoRequest) -> pb.NodeGetInfoResponse:
        return pb.NodeGetInfoResponse(node_id=self.node_id, max_volumes_per_node=0)

    async def _record(self, volume_id: str) -> VolumeRecord:
        record = await self._volumes.get(volume_id)
        if record is None:
            raise not_found(volume_id)
        return record


def _target(path: str) -> Path:
    if not path:
        raise required("target_path")
    if not path.startswith("/"):
        raise CsiError(grpc.StatusCode.INVALID_ARGUMENT, "target_path must be absolute")
    return Path(os.path.normpath(path))


def _check_compatible(record: VolumeRecord, target: str, wanted: Publication) -> None:
    """ALREADY_EXISTS: this target has the volume another way; FAILED_PRECONDITION:
    a single-writer mode would get a second target."""
    current = record.published.get(target)
    if current is not None:
        if (current.read_only, current.flags) != (wanted.read_only, wanted.flags):
            raise CsiError(grpc.StatusCode.ALREADY_EXISTS,
                           f"volume {record.volume_id} is published at {target} "
                           f"{'read-only' if current.read_only else 'read-write'} or with "
                           "other mount flags")
        return
    others = [p for t, p in record.published.items() if t != target]
    if others and (wanted.mode in SINGLE_TARGET_MODES
                   or any(p.mode in SINGLE_TARGET_MODES for p in others)):
        raise CsiError(grpc.StatusCode.FAILED_PRECONDITION,
                       f"volume {record.volume_id} is single-writer and already published "
                       "at another target")


async def _live_mount(target: Path) -> bool:
    """Whether ``target`` is a mount point that answers (a bind of a dead daemon's
    mount does not: ENOTCONN)."""
    if not _is_mount_point(target):
        return False
    try:
        await trio.to_thread.run_sync(os.stat, target)
    except OSError as exc:
        if exc.errno == errno.ENOTCONN:
            await _run("umount", "-l", str(target))
            return False
        raise
    return True


async def _bind(source: Path, target: Path, read_only: bool, flags: list[str]) -> None:
    if not target.parent.is_dir():
        _no_parent(target)
    target.mkdir(exist_ok=True)
    await _run("mount", "--bind", str(source), str(target))
    options = (["ro"] if read_only else []) + flags
    if not options:
        return
    try:
        # A bind takes its flags only from a remount (the kernel ignores them on the bind).
        await _run("mount", "-o", ",".join(["remount", "bind", *options]), str(target),
                   secret=True)
    except CsiError:
        await _run("umount", str(target))
        raise


def _no_parent(target: Path) -> None:
    raise CsiError(grpc.StatusCode.FAILED_PRECONDITION,
                   f"target_path's parent {target.parent} does not exist (the CO makes it)")


async def _unbind(target: Path) -> None:
    """Unmount ``target`` if mounted, then remove the directory publish made."""
    if _is_mount_point(target):
        await _run("umount", str(target))
    try:
        target.rmdir()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise CsiError(grpc.StatusCode.INTERNAL, f"{target}: {exc.strerror}") from None


def _is_mount_point(path: Path) -> bool:
    encoded = str(path).replace("\\", "\\134").replace(" ", "\\040").replace("\t", "\\011") \
        .replace("\n", "\\012")
    with open("/proc/self/mountinfo") as mountinfo:
        return any(line.split()[4] == encoded for line in mountinfo)


async def _run(*argv: str, secret: bool = False) -> None:
    """Run mount/umount; INTERNAL (or INVALID_ARGUMENT for refused flags) if it fails.
    ``secret``: the command line holds mount flags, which are never repeated."""
    result = await trio.run_process(list(argv), check=False, capture_stdout=True,
                                    capture_stderr=True, stdin=subprocess.DEVNULL)
    if result.returncode == 0:
        return
    if secret:
        raise CsiError(grpc.StatusCode.INVALID_ARGUMENT,
                       "the mount flags (or read-only) could not be applied to the bind mount")
    message = result.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["failed"]
    raise CsiError(grpc.StatusCode.INTERNAL, f"{argv[0]}: {message[0]}")
