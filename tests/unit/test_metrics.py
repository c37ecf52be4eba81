"""volfs.metrics' tables as Prometheus reads them, the volume figures' rules, and the
--metrics address check."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from prometheus_client import generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families

from volfs.config import parse_metrics
from volfs.metrics import Counts, Timings
from volfs.server.metrics import volume_stats


class _Tables:
    def __init__(self, *tables: Timings | Counts) -> None:
        self._tables = tables

    def collect(self) -> Iterator[Metric]:
        for table in self._tables:
            yield from table.collect()


def _samples(*tables: Timings | Counts) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(_Tables(*tables)).decode()  # type: ignore[arg-type]
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_timings_expose_cumulative_buckets_a_sum_and_a_counter() -> None:
    table = Timings("t_seconds", "doc", ("op",), (0.1, 1.0), count_name="t_total")
    series = table.series("read")
    for seconds in (0.05, 0.1, 0.5, 2.0):
        series.observe(seconds)
    samples = _samples(table)
    assert samples[("t_seconds_bucket", (("le", "0.1"), ("op", "read")))] == 2
    assert samples[("t_seconds_bucket", (("le", "1.0"), ("op", "read")))] == 3
    assert samples[("t_seconds_bucket", (("le", "+Inf"), ("op", "read")))] == 4
    assert samples[("t_seconds_count", (("op", "read"),))] == 4
    assert samples[("t_seconds_sum", (("op", "read"),))] == pytest.approx(2.65)
    assert samples[("t_total", (("op", "read"),))] == 4
    assert table.series("read") is series


def test_counts_by_labels() -> None:
    table = Counts("e_total", "doc", ("op", "errno"))
    table.inc("lookup", "ENOENT")
    table.inc("lookup", "ENOENT", amount=2)
    assert _samples(table) == {("e_total", (("errno", "ENOENT"), ("op", "lookup"))): 3}


def _statvfs(blocks: int, bfree: int, bavail: int, files: int, ffree: int
             ) -> os.statvfs_result:
    return os.statvfs_result((4096, 4096, blocks, bfree, bavail, files, ffree, ffree, 0, 255))


def test_a_limited_volume_reports_its_limit_and_its_counter() -> None:
    stats = volume_stats(3 << 20, 64 << 20, True, _statvfs(1000, 500, 400, 100, 60))
    assert stats.values() == {"capacity_bytes": 64 << 20, "available_bytes": 61 << 20,
                              "used_bytes": 3 << 20, "inodes": 100, "inodes_free": 60,
                              "inodes_used": 40}


def test_an_unlimited_volume_reports_its_filesystem_and_its_counter() -> None:
    stats = volume_stats(5, None, True, _statvfs(1000, 500, 400, 100, 60))
    assert (stats.capacity, stats.available, stats.used) == (1000 * 4096, 400 * 4096, 5)


def test_an_untracked_volume_reports_its_filesystem() -> None:
    stats = volume_stats(0, None, False, _statvfs(1000, 500, 400, 100, 60))
    assert (stats.capacity, stats.available, stats.used) == (1000 * 4096, 400 * 4096,
                                                            500 * 4096)


def test_without_statfs_only_the_counter_is_known() -> None:
    assert volume_stats(7, None, True, None).values() == {
        "capacity_bytes": None, "available_bytes": None, "used_bytes": 7, "inodes": None,
        "inodes_free": None, "inodes_used": None}
    assert volume_stats(0, None, False, None).used is None


@pytest.mark.parametrize("text, expected", [
    ("127.0.0.1:9473", ("127.0.0.1", 9473)), ("[::1]:0", ("::1", 0)),
    ("localhost:80", ("127.0.0.1", 80)),
])
def test_metrics_addresses_are_loopback(text: str, expected: tuple[str, int]) -> None:
    assert parse_metrics(text) == expected


@pytest.mark.parametrize("text, message", [
    ("0.0.0.0:9473", "not a loopback address; volfs serves metrics on loopback only"),
    ("10.1.2.3:9473", "not a loopback address"),
    ("example.com:9473", "not an IP address"),
    ("127.0.0.1", "expected HOST:PORT"),
])
def test_metrics_refuses_other_addresses(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_metrics(text)
