"""Timestamps and the ages kubectl prints for them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from volfs.api.times import age, human_duration, parse_timestamp

NOW = datetime(2026, 1, 2, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize("seconds, shown", [
    (0, "0s"), (5, "5s"), (119, "119s"), (120, "2m"), (180, "3m"), (307, "5m7s"), (600, "10m"),
    (7200, "120m"), (179 * 60, "179m"), (3 * 3600, "3h"), (3 * 3600 + 60, "3h1m"),
    (8 * 3600, "8h"), (30 * 3600, "30h"), (47 * 3600, "47h"), (50 * 3600, "2d2h"),
    (4 * 86400, "4d"), (4 * 86400 + 3600, "4d1h"), (8 * 86400, "8d"), (100 * 86400, "100d"),
    (800 * 86400, "2y70d"), (3 * 365 * 86400, "3y"), (9 * 365 * 86400, "9y"),
    (-1, "0s"), (-5, "<invalid>"),
])
def test_ages_read_as_kubectl_prints_them(seconds: int, shown: str) -> None:
    assert human_duration(seconds) == shown


def test_timestamps_parse_as_rfc3339_in_utc_unless_told() -> None:
    assert parse_timestamp("2026-01-02T11:55:00Z") == NOW - timedelta(minutes=5)
    assert parse_timestamp("2026-01-02T11:55:00") == NOW - timedelta(minutes=5)
    assert parse_timestamp("2026-01-02T13:55:00+02:00") == NOW - timedelta(minutes=5)
    assert [parse_timestamp(v) for v in ("", None, 5, "yesterday")] == [None] * 4


def test_age_of_a_timestamp_or_unknown() -> None:
    assert age("2026-01-02T11:55:00Z", NOW) == "5m"
    assert age(None, NOW) == age("garbage", NOW) == "<unknown>"
