"""``GET /metrics`` for Prometheus: volfs's own counters plus gauges computed per scrape.

Served by hypercorn inside the daemon's trio run, not by prometheus_client's server
thread, on purpose: the counters (volfs.metrics) and everything the gauges read (the
fs layer's tree of served volumes, each store's live ``Usage``) are plain structures
owned by the trio thread, changed by FUSE handlers with no lock. Read from another
thread they could be seen half-changed (a dict resized under an iteration); read here,
between two awaits, they are consistent.

The gauges:

- kubelet's ``kubelet_volume_stats_*`` for every volume of every pod, by namespace,
  persistentvolumeclaim ("" for a volume that is not a claim), pod and volume. Bytes
  come from the live usage counters the stores keep (what ``volfs describe`` shows),
  never from a walk of the volume; capacity is the volume's limit (``sizeLimit``, the
  PV's capacity) or, without one, the backing filesystem's. A volume whose usage is not
  tracked (HostPath, an inline NFS volume) and the inode figures are the backing
  filesystem's statfs, as kubelet reports a PVC's: volfs keeps no per-volume inode count.
- objects by phase: pods and claims by namespace, PVs.
"""

from __future__ import annotations

import logging
import os
import socket
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass

import trio
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from volfs.controllers.world import PV, PVC
from volfs.fs import Filesystem
from volfs.lifecycle.pod_status import POD
from volfs.metrics import collect as collect_metrics
from volfs.server.serve import serve_socket
from volfs.state import AsyncStateDB
from volfs.stores.base import Store, statfs_or_none

log = logging.getLogger(__name__)

Gather = Callable[[], Awaitable[list[Metric]]]

# A scrape waits STATFS_SECONDS (stores/base.py) at most for a volume's statfs (an NFS
# FSSTAT): a server that does not answer costs that volume its filesystem figures, not
# the scrape.
VOLUME_LABELS = ["namespace", "persistentvolumeclaim", "pod", "volume"]
_VOLUME_GAUGES = {
    "capacity_bytes": "Capacity in bytes of the volume: its limit (sizeLimit, the PV's "
                      "capacity), else its backing filesystem's.",
    "available_bytes": "Bytes the volume can still take.",
    "used_bytes": "Bytes used by the volume (live usage counter; the backing filesystem's "
                  "where usage is not tracked: HostPath, inline NFS).",
    "inodes": "Inodes of the volume's backing filesystem.",
    "inodes_free": "Free inodes of the volume's backing filesystem.",
    "inodes_used": "Used inodes of the volume's backing filesystem.",
}
POD_PHASES = ("Pending", "Running", "Succeeded", "Failed", "Unknown")
CLAIM_PHASES = ("Pending", "Bound", "Lost")
VOLUME_PHASES = ("Pending", "Available", "Bound", "Released", "Failed")


@dataclass(frozen=True)
class VolumeStats:
    """One volume's figures; None where they could not be had (statfs unanswered)."""

    capacity: int | None
    available: int | None
    used: int | None
    inodes: int | None
    inodes_free: int | None

    def values(self) -> dict[str, int | None]:
        inodes_used = (None if self.inodes is None or self.inodes_free is None
                       else max(0, self.inodes - self.inodes_free))
        return {"capacity_bytes": self.capacity, "available_bytes": self.available,
                "used_bytes": self.used, "inodes": self.inodes,
                "inodes_free": self.inodes_free, "inodes_used": inodes_used}


def volume_stats(usage_used: int, limit: int | None, tracked: bool,
                 fs: os.statvfs_result | None) -> VolumeStats:
    """A volume's figures from its usage counter (``tracked``) and its backing statfs."""
    fs_capacity = fs.f_blocks * fs.f_frsize if fs else None
    fs_available = fs.f_bavail * fs.f_frsize if fs else None
    inodes = (fs.f_files, fs.f_ffree) if fs and fs.f_files else (None, None)
    if tracked and limit is not None:
        return VolumeStats(limit, max(0, limit - usage_used), usage_used, *inodes)
    if tracked:
        return VolumeStats(fs_capacity, fs_available, usage_used, *inodes)
    used = (fs.f_blocks - fs.f_bfree) * fs.f_frsize if fs else None
    return VolumeStats(fs_capacity, fs_available, used, *inodes)


def volume_gatherer(db: AsyncStateDB, fs: Filesystem) -> Gather:
    """The ``kubelet_volume_stats_*`` gauges of every volume served now."""

    async def gather() -> list[Metric]:
        served: list[tuple[list[str], Store]] = []
        for obj in await db.list(POD):
            meta = obj["metadata"]
            claims = {v.get("name"): (v.get("persistentVolumeClaim") or {}).get("claimName", "")
                      for v in (obj.get("spec") or {}).get("volumes") or []}
            for volume in fs.volumes(meta["uid"]):
                served.append(([meta.get("namespace") or "default", claims.get(volume.name, ""),
                                meta["name"], volume.name], volume.store))
        statfs: list[os.statvfs_result | None] = [None] * len(served)

        async def one(index: int, store: Store) -> None:
            statfs[index] = await statfs_or_none(store)

        async with trio.open_nursery() as nursery:  # a slow NFS server delays only its own
            for index, (_, store) in enumerate(served):
                nursery.start_soon(one, index, store)
        families = {key: GaugeMetricFamily(f"kubelet_volume_stats_{key}", doc,
                                           labels=VOLUME_LABELS)
                    for key, doc in _VOLUME_GAUGES.items()}
        for (labels, store), fs_stats in zip(served, statfs, strict=True):
            stats = volume_stats(store.usage.used, store.usage.limit, store.track_usage,
                                 fs_stats)
            for key, value in stats.values().items():
                if value is not None:
                    families[key].add_metric(labels, value)
        return list(families.values())

    return gather


def phase_gatherer(db: AsyncStateDB) -> Gather:
    """Pods and claims by namespace and phase, PVs by phase (every known phase, 0 too)."""

    async def gather() -> list[Metric]:
        pods = _by_namespace_and_phase(await db.list(POD))
        claims = _by_namespace_and_phase(await db.list(PVC))
        volumes = Counter(_phase(obj) for obj in await db.list(PV))
        return [
            _namespaced("volfs_pods", "Pods by namespace and phase.", pods, POD_PHASES),
            _namespaced("volfs_persistentvolumeclaims", "Claims by namespace and phase.",
                        claims, CLAIM_PHASES),
            _by_phase(volumes, VOLUME_PHASES),
        ]

    return gather


def _phase(obj: dict[str, object]) -> str:
    status = obj.get("status")
    phase = status.get("phase") if isinstance(status, dict) else None
    return str(phase or "Pending")


def _by_namespace_and_phase(objs: Iterable[dict[str, object]]) -> Counter[tuple[str, str]]:
    counts: Counter[tuple[str, str]] = Counter()
    for obj in objs:
        meta = obj.get("metadata")
        namespace = meta.get("namespace") if isinstance(meta, dict) else None
        counts[(str(namespace or "default"), _phase(obj))] += 1
    return counts


def _namespaced(name: str, doc: str, counts: Counter[tuple[str, str]],
                phases: tuple[str, ...]) -> Metric:
    family = GaugeMetricFamily(name, doc, labels=["namespace", "phase"])
    namespaces = sorted({namespace for namespace, _ in counts} | {"default"})
    known = set(phases)
    for namespace in namespaces:
        for phase in (*phases, *sorted({p for n, p in counts if n == namespace} - known)):
            family.add_metric([namespace, phase], counts[(namespace, phase)])
    return family


def _by_phase(counts: Counter[str], phases: tuple[str, ...]) -> Metric:
    family = GaugeMetricFamily("volfs_persistentvolumes", "PersistentVolumes by phase.",
                               labels=["phase"])
    for phase in (*phases, *sorted(set(counts) - set(phases))):
        family.add_metric([phase], counts[phase])
    return family


class _Families:
    """What generate_latest needs of a registry: ``collect()``."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


def create_metrics_app(gatherers: list[Gather]) -> Starlette:
    """``GET /metrics``: volfs.metrics' tables, then each gatherer's gauges."""

    async def endpoint(request: Request) -> Response:
        families = list(collect_metrics())
        for gather in gatherers:
            families += await gather()
        return Response(generate_latest(_Families(families)),  # type: ignore[arg-type]
                        media_type=CONTENT_TYPE_LATEST)

    return Starlette(routes=[Route("/metrics", endpoint, methods=["GET"])])


async def serve_metrics(app: Starlette, sock: socket.socket, *,
                        task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve ``app`` over plain HTTP on the bound loopback ``sock`` until cancelled;
    ``task_status.started()`` gets the ``HOST:PORT`` it listens on."""
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    async def run(task_status: trio.TaskStatus[None]) -> None:
        await serve_socket(app, sock, task_status=task_status)

    async with trio.open_nursery() as nursery:
        await nursery.start(run)
        task_status.started(shown)
