"""Kubernetes' timestamps (RFC 3339) and the ages kubectl prints for them."""

from __future__ import annotations

from datetime import UTC, datetime


def timestamp_now() -> str:
    """Now, as Kubernetes writes its timestamps (``2024-05-01T12:00:00Z``, UTC, seconds)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def human_duration(seconds: float) -> str:
    """An age as kubectl and the API server print one (``duration.HumanDuration``).

    >>> [human_duration(s) for s in (5, 90, 307, 180 * 60, 3 * 3600 + 60, 4 * 86400)]
    ['5s', '90s', '5m7s', '3h', '3h1m', '4d']
    """
    total = int(seconds)
    if total < -1:
        return "<invalid>"
    if total < 0:
        return "0s"
    if total < 120:
        return f"{total}s"
    minutes = total // 60
    if minutes < 10:
        return f"{minutes}m{total % 60}s" if total % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = total // 3600
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        years, days = hours // 24 // 365, (hours // 24) % 365
        return f"{years}y{days}d" if days else f"{years}y"
    return f"{hours // 24 // 365}y"


def parse_timestamp(value: object) -> datetime | None:
    """An RFC 3339 timestamp (``2024-05-01T12:00:00Z``) as an aware datetime, or None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def age(timestamp: object, now: datetime) -> str:
    """``human_duration`` since ``timestamp``; ``<unknown>`` when there is none."""
    since = parse_timestamp(timestamp)
    if since is None:
        return "<unknown>"
    return human_duration((now - since).total_seconds())
