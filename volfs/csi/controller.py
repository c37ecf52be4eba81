"""CSI's Controller service: create, delete, validate, list, size and expand volumes.

Every call runs on the daemon's trio loop (see :mod:`volfs.csi.server`). A call on a
volume id (or a CreateVolume name) that another call is working on is ABORTED at once.
"""

from __future__ import annotations

import grpc

from volfs.csi import csi_pb2 as pb
from volfs.csi.errors import CsiError, InFlight, not_found, required
from volfs.csi.storage import CsiVolumes, StorageFailed
from volfs.csi.volumes import (
    NFS,
    Parameters,
    VolumeRecord,
    capability_problem,
    checked_capabilities,
    checked_id,
    checked_name,
    fits,
    is_volume_id,
    new_volume_id,
    parse_parameters,
    wanted_capacity,
)

RPC = pb.ControllerServiceCapability.RPC
CAPABILITIES = (RPC.CREATE_DELETE_VOLUME, RPC.LIST_VOLUMES, RPC.GET_CAPACITY, RPC.EXPAND_VOLUME)


class Controller:
    def __init__(self, volumes: CsiVolumes, in_flight: InFlight) -> None:
        self._volumes = volumes
        self._in_flight = in_flight

    async def CreateVolume(self, request: pb.CreateVolumeRequest) -> pb.CreateVolumeResponse:
        name = checked_name(request.name)
        params = parse_parameters(dict(request.parameters))
        checked_capabilities(params.kind, request.volume_capabilities)
        if request.HasField("volume_content_source"):
            raise CsiError(grpc.StatusCode.INVALID_ARGUMENT,
                           "volume_content_source: volfs makes empty volumes only")
        capacity_range = request.capacity_range if request.HasField("capacity_range") else None
        capacity = wanted_capacity(capacity_range)
        with self._in_flight.hold(f"name:{name}"):
            record = await self._volumes.by_name(name)
            if record is not None:
                if record.parameters.settings() != params.settings() or not fits(
                        record.capacity, capacity_range):
                    raise CsiError(grpc.StatusCode.ALREADY_EXISTS,
                                   f"volume {name!r} exists ({record.volume_id}) with other "
                                   "parameters or capacity")
            else:
                record = await self._new(name, params, capacity)
            with self._in_flight.hold(record.volume_id):
                await self._make(record)
        return pb.CreateVolumeResponse(volume=record.to_volume())

    async def _new(self, name: str, params: Parameters, capacity: int | None) -> VolumeRecord:
        if params.kind == NFS:
            problem = self._volumes.nfs_problem(params)
            if problem:
                raise CsiError(grpc.StatusCode.INVALID_ARGUMENT, f"parameters: {problem}")
        free = self._volumes.free_bytes(params)
        if capacity is not None and free is not None and capacity > free:
            raise CsiError(grpc.StatusCode.OUT_OF_RANGE,
                           f"{capacity} bytes asked, {free} free where the volume would live")
        record = VolumeRecord(new_volume_id(params.kind), name, params, capacity)
        await self._volumes.save(record)  # first: a retry after a crash finds the same id
        return record

    async def _make(self, record: VolumeRecord) -> None:
        try:
            await self._volumes.make(record)
        except StorageFailed as exc:
            raise CsiError(grpc.StatusCode.UNAVAILABLE, str(exc)) from None

    async def DeleteVolume(self, request: pb.DeleteVolumeRequest) -> pb.DeleteVolumeResponse:
        if not request.volume_id:
            raise required("volume_id")
        if not is_volume_id(request.volume_id):
            return pb.DeleteVolumeResponse()  # never made, so already gone
        with self._in_flight.hold(request.volume_id):
            record = await self._volumes.get(request.volume_id)
            if record is None:
                return pb.DeleteVolumeResponse()
            if record.published:
                raise CsiError(grpc.StatusCode.FAILED_PRECONDITION,
                               f"volume {record.volume_id} is published at "
                               f"{len(record.published)} target(s); unpublish it first")
            try:
                await self._volumes.destroy(record)
            except StorageFailed as exc:
                raise CsiError(grpc.StatusCode.UNAVAILABLE, str(exc)) from None
        return pb.DeleteVolumeResponse()

    async def ValidateVolumeCapabilities(self, request: pb.ValidateVolumeCapabilitiesRequest
                                         ) -> pb.ValidateVolumeCapabilitiesResponse:
        record = await self._record(request.volume_id)
        if not request.volume_capabilities:
            raise required("volume_capabilities")
        for capability in request.volume_capabilities:
            problem = capability_problem(record.kind, capability)
            if problem:
                return pb.ValidateVolumeCapabilitiesResponse(message=problem)
        confirmed = pb.ValidateVolumeCapabilitiesResponse.Confirmed(
            volume_context=dict(request.volume_context),
            volume_capabilities=list(request.volume_capabilities),
            parameters=dict(request.parameters))
        return pb.ValidateVolumeCapabilitiesResponse(confirmed=confirmed)

    async def ListVolumes(self, request: pb.ListVolumesRequest) -> pb.ListVolumesResponse:
        if request.max_entries < 0:
            raise CsiError(grpc.StatusCode.INVALID_ARGUMENT, "max_entries must not be negative")
        token = request.starting_token
        if token and not is_volume_id(token):
            raise CsiError(grpc.StatusCode.ABORTED, f"starting_token {token[:80]!r} is not one "
                           "ListVolumes gave")
        # Ordered by id, and the token is the next id: a volume made or deleted between
        # two pages neither repeats nor hides another.
        records = sorted((r for r in await self._volumes.records() if r.volume_id >= token),
                         key=lambda r: r.volume_id)
        page = records[:request.max_entries] if request.max_entries else records
        rest = records[len(page):]
        return pb.ListVolumesResponse(
            entries=[pb.ListVolumesResponse.Entry(volume=r.to_volume()) for r in page],
            next_token=rest[0].volume_id if rest else "")

    async def GetCapacity(self, request: pb.GetCapacityRequest) -> pb.GetCapacityResponse:
        params = parse_parameters(dict(request.parameters))
        for capability in request.volume_capabilities:
            if capability_problem(params.kind, capability):
                return pb.GetCapacityResponse(available_capacity=0)
        # An NFS share's free space is the server's to tell: 0 (unknown) there.
        return pb.GetCapacityResponse(available_capacity=self._volumes.free_bytes(params) or 0)

    async def ControllerGetCapabilities(self, request: pb.ControllerGetCapabilitiesRequest
                                        ) -> pb.ControllerGetCapabilitiesResponse:
        return pb.ControllerGetCapabilitiesResponse(capabilities=[
            pb.ControllerServiceCapability(rpc=RPC(type=kind)) for kind in CAPABILITIES])

    async def ControllerExpandVolume(self, request: pb.ControllerExpandVolumeRequest
                                     ) -> pb.ControllerExpandVolumeResponse:
        volume_id = checked_id(request.volume_id)
        if not request.HasField("capacity_range"):
            raise required("capacity_range")
        wanted = wanted_capacity(request.capacity_range)
        if wanted is None:
            raise required("capacity_range.required_bytes or limit_bytes")
        with self._in_flight.hold(volume_id):
            record = await self._record(volume_id)
            current = record.capacity
            if current is None or current >= wanted:  # already as large (or unlimited)
                if current is not None and not fits(current, request.capacity_range):
                    raise CsiError(grpc.StatusCode.OUT_OF_RANGE,
                                   f"volume is {current} bytes, above limit_bytes; volfs "
                                   "does not shrink volumes")
                return pb.ControllerExpandVolumeResponse(capacity_bytes=current or 0)
            free = self._volumes.free_bytes(record.parameters)
            if free is not None and wanted - current > free:
                raise CsiError(grpc.StatusCode.OUT_OF_RANGE,
                               f"{wanted - current} more bytes asked, {free} free")
            record.capacity = wanted
            await self._volumes.save(record)
            self._volumes.set_capacity(record)  # live: the next write sees the new limit
        return pb.ControllerExpandVolumeResponse(capacity_bytes=wanted,
                                                 node_expansion_required=False)

    async def _record(self, volume_id: str) -> VolumeRecord:
        record = await self._volumes.get(checked_id(volume_id))
        if record is None:
            raise not_found(volume_id)
        return record
