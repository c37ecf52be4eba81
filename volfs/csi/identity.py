"""CSI's Identity service: who the plugin is, what it offers, whether it is ready."""

from __future__ import annotations

from collections.abc import Callable

from google.protobuf import wrappers_pb2

from volfs import __version__
from volfs.csi import csi_pb2 as pb

DRIVER_NAME = "volfs.io"

Capability = pb.PluginCapability


class Identity:
    def __init__(self, ready: Callable[[], bool]) -> None:
        """``ready``: whether the volfs mount is up (volumes can be published)."""
        self._ready = ready

    async def GetPluginInfo(self, request: pb.GetPluginInfoRequest) -> pb.GetPluginInfoResponse:
        return pb.GetPluginInfoResponse(name=DRIVER_NAME, vendor_version=__version__)

    async def GetPluginCapabilities(self, request: pb.GetPluginCapabilitiesRequest
                                    ) -> pb.GetPluginCapabilitiesResponse:
        return pb.GetPluginCapabilitiesResponse(capabilities=[
            Capability(service=Capability.Service(type=Capability.Service.CONTROLLER_SERVICE)),
            Capability(volume_expansion=Capability.VolumeExpansion(
                type=Capability.VolumeExpansion.ONLINE)),
        ])

    async def Probe(self, request: pb.ProbeRequest) -> pb.ProbeResponse:
        return pb.ProbeResponse(ready=wrappers_pb2.BoolValue(value=self._ready()))
