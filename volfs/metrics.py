"""The daemon's own counters and latency histograms, which every layer records into.

Low layers (the FUSE handlers, the NFS RPC client, the controllers) record here and
import nothing else of volfs; the daemon serves them on ``--metrics`` together with
gauges computed at scrape time from higher-level state (volume usage, phases: see
:mod:`volfs.server.metrics`). See docs/metrics.md for every name and label.

Why not prometheus_client's own Counter and Histogram: each of their updates takes a
lock (a histogram's, two), and a FUSE request is a few microseconds. Everything that
records here runs on the daemon's one trio thread, and so does the scrape, which reads
these tables with no other code running between two statements: plain integers and
lists suffice. prometheus_client still does the exposition (:func:`collect`).

Example::

    LOOKUPS = Timings("volfs_example_duration_seconds", "...", ("operation",),
                      count_name="volfs_example_total")
    series = LOOKUPS.series("lookup")      # bind the labels once, outside the hot path
    series.observe(0.00012)
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector

# Seconds. FUSE requests on local volumes take tens of microseconds, NFS calls up to the
# mount options' bound (a soft mount's default gives up after a few minutes).
FAST_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
SLOW_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                30.0, 60.0, 120.0, 300.0)


class Series:
    """One label set of a :class:`Timings`: how many, how long in all, and by bucket."""

    __slots__ = ("_bounds", "buckets", "count", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self.buckets = [0] * (len(bounds) + 1)  # the last: above every bound (+Inf)
        self.count = 0
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.buckets[bisect.bisect_left(self._bounds, seconds)] += 1
        self.count += 1
        self.total += seconds


class Timings:
    """A latency histogram by labels, and (with ``count_name``) the counter of the same
    events, which is the histogram's count under a ``_total`` name of its own."""

    def __init__(self, name: str, documentation: str, labelnames: tuple[str, ...],
                 buckets: tuple[float, ...] = FAST_BUCKETS, *, count_name: str = "",
                 count_documentation: str = "") -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = labelnames
        self.bounds = buckets
        self.count_name = count_name
        self.count_documentation = count_documentation or documentation
        self._series: dict[tuple[str, ...], Series] = {}
        _TABLES.append(self)

    def series(self, *labels: str) -> Series:
        """The series of these label values, made at first use."""
        found = self._series.get(labels)
        if found is None:
            found = self._series[labels] = Series(self.bounds)
        return found

    def collect(self) -> Iterator[Metric]:
        histogram = HistogramMetricFamily(self.name, self.documentation,
                                          labels=list(self.labelnames))
        counter = CounterMetricFamily(self.count_name.removesuffix("_total"),
                                      self.count_documentation, labels=list(self.labelnames))
        for labels, series in sorted(self._series.items()):
            running, buckets = 0, []
            for bound, count in zip((*self.bounds, math.inf), series.buckets, strict=True):
                running += count
                buckets.append((_bound_text(bound), running))
            histogram.add_metric(list(labels), buckets, series.total)
            counter.add_metric(list(labels), series.count)
        yield histogram
        if self.count_name:
            yield counter


class Counts:
    """A counter by labels."""

    def __init__(self, name: str, documentation: str, labelnames: tuple[str, ...]) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = labelnames
        self._values: dict[tuple[str, ...], int] = {}
        _TABLES.append(self)

    def inc(self, *labels: str, amount: int = 1) -> None:
        self._values[labels] = self._values.get(labels, 0) + amount

    def value(self, *labels: str) -> int:
        return self._values.get(labels, 0)

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name.removesuffix("_total"), self.documentation,
                                     labels=list(self.labelnames))
        for labels, value in sorted(self._values.items()):
            family.add_metric(list(labels), value)
        yield family


def _bound_text(bound: float) -> str:
    return "+Inf" if bound == math.inf else repr(bound)


_TABLES: list[Timings | Counts] = []


def collect() -> Iterable[Metric]:
    """Every table's families, then the process's own (CPU, memory, descriptors).

    Call it on the trio thread (see the module docstring)."""
    for table in _TABLES:
        yield from table.collect()
    yield from _PROCESS.collect()


_PROCESS = ProcessCollector(registry=CollectorRegistry())

# -- FUSE requests (volfs.fs.operations) ----------------------------------------------------

FUSE_REQUESTS = Timings(
    "volfs_fuse_request_duration_seconds",
    "Time to answer a FUSE request, by operation (lookup, getattr, read, write, ...).",
    ("operation",), count_name="volfs_fuse_requests_total",
    count_documentation="FUSE requests answered, by operation.")
FUSE_ERRORS = Counts(
    "volfs_fuse_errors_total",
    "FUSE requests answered with an error, by operation and errno name (ENOENT, ENOSPC, ...).",
    ("operation", "errno"))

# -- NFS RPCs (volfs.stores.nfs.rpc) ----------------------------------------------------------

NFS_RPCS = Timings(
    "volfs_nfs_rpc_duration_seconds",
    "Time from the first send of an NFS or MOUNT RPC to its answer (re-sends included), "
    "by server and procedure.",
    ("server", "procedure"), SLOW_BUCKETS, count_name="volfs_nfs_rpc_requests_total",
    count_documentation="NFS and MOUNT RPCs made, by server and procedure.")
NFS_RETRANSMISSIONS = Counts(
    "volfs_nfs_rpc_retransmissions_total",
    "RPCs sent again, on a new connection, after theirs broke or went unanswered.",
    ("server", "procedure"))
NFS_TIMEOUTS = Counts(
    "volfs_nfs_rpc_timeouts_total",
    "RPC sends unanswered within the mount's timeo (each drops the connection).",
    ("server", "procedure"))
NFS_UNANSWERED = Counts(
    "volfs_nfs_rpc_unanswered_total",
    "RPCs that failed because the server did not answer before their deadline "
    "(the caller got EIO, or ETIMEDOUT with softerr).",
    ("server", "procedure"))

# -- controllers (volfs.controllers) ------------------------------------------------------

BINDER_SYNCS = Timings(
    "volfs_binder_sync_duration_seconds",
    "Time the binder took over one claim (match, provision, bind), by outcome.",
    ("result",), SLOW_BUCKETS, count_name="volfs_binder_operations_total",
    count_documentation="Claims the binder looked at, by outcome (bound, pending, "
    "waiting, lost, unchanged).")
PROVISIONER_OPERATIONS = Timings(
    "volfs_provisioner_operation_duration_seconds",
    "Time of a provisioner plugin's operation (provision, delete, recycle), by result.",
    ("operation", "result"), SLOW_BUCKETS, count_name="volfs_provisioner_operations_total",
    count_documentation="Provisioner plugin operations (provision, delete, recycle), "
    "by result (success, failure).")
