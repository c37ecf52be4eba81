"""How the CLI shows objects: kubectl's tables, ages and sizes."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import yaml

from volfs.api import format_quantity
from volfs.api.times import age


def format_bytes(n: object) -> str:
    """A byte count for people: exact binary suffix when one fits, else one decimal.

    >>> format_bytes(64 * 1024**2), format_bytes(1536), format_bytes(100), format_bytes(None)
    ('64Mi', '1.5Ki', '100', '<unknown>')
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        return "<unknown>"
    for power, suffix in ((6, "Ei"), (5, "Pi"), (4, "Ti"), (3, "Gi"), (2, "Mi"), (1, "Ki")):
        unit = 1024**power
        if n >= unit:
            return f"{n // unit}{suffix}" if n % unit == 0 else f"{n / unit:.1f}{suffix}"
    return str(n)


def format_usage(n: object, limit: object = None) -> str:
    """Bytes used, as a Kubernetes quantity like the limit beside it, and the share of
    that limit when there is one: what ``describe`` prints.

    The quantity is exact when a binary suffix divides it, else cut to one decimal of
    the largest suffix it reaches (never more than is used, as ``kubectl top``).

    >>> format_usage(6, 64 * 1024**2), format_usage(12 * 1024), format_usage(1536, 4096)
    ('6 (0% of 64Mi)', '12Ki', '1.5Ki (37% of 4Ki)')
    >>> format_usage(3 * 1024**2 + 1), format_usage(None)
    ('3Mi', '<unknown>')
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        return "<unknown>"
    text = format_quantity(n)
    for power, suffix in ((6, "Ei"), (5, "Pi"), (4, "Ti"), (3, "Gi"), (2, "Mi"), (1, "Ki")):
        unit = 1024**power
        if n >= unit and n % unit:
            tenths = n * 10 // unit
            text = (f"{tenths // 10}.{tenths % 10}" if tenths % 10 else f"{tenths // 10}") + suffix
            break
    if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0:
        text += f" ({n * 100 // limit}% of {format_quantity(limit)})"
    return text


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell plus three spaces, as kubectl aligns them."""
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [str(cell).ljust(width + 3) for cell, width in zip(row, widths, strict=True)]
        lines.append("".join(cells).rstrip())
    return "\n".join(lines)


def pods_table(
    pods: Sequence[dict[str, Any]], now: datetime, *, all_namespaces: bool, wide: bool
) -> str:
    """``volfs get pods``: NAME, STATUS, VOLUMES, AGE (NAMESPACE first with -A).

    READY (``1/2``: running containers of all) follows NAME when any pod has
    ``status.containerStatuses`` (its containers are run by volfs). ``-o wide``
    adds the pod's UID and the bytes its volumes use.
    """
    header = ["NAME", "STATUS", "VOLUMES", "AGE"]
    ready = any((p.get("status") or {}).get("containerStatuses") is not None for p in pods)
    if ready:
        header.insert(1, "READY")
    if all_namespaces:
        header.insert(0, "NAMESPACE")
    if wide:
        header += ["UID", "USED"]
    rows = []
    for pod in pods:
        metadata = pod.get("metadata") or {}
        volumes = volume_statuses(pod)
        row = [
            str(metadata.get("name", "")),
            _status(pod),
            str(len(volumes) if volumes else len((pod.get("spec") or {}).get("volumes") or [])),
            age(metadata.get("creationTimestamp"), now),
        ]
        if ready:
            row.insert(1, _ready(pod))
        if all_namespaces:
            row.insert(0, str(metadata.get("namespace", "")))
        if wide:
            used = [v.get("usedBytes") for v in volumes]
            total = sum(u for u in used if isinstance(u, int))
            row += [str(metadata.get("uid") or "<none>"), format_bytes(total)]
        rows.append(row)
    return table(header, rows)


def _status(pod: dict[str, Any]) -> str:
    """STATUS: the phase, overridden by the pod's reason (``VolumeMountLost``), or
    ``Terminating`` for a pod being deleted (as a watch tells of a deleted pod), as
    kubectl prints it."""
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return "Terminating"
    status = pod.get("status") or {}
    return str(status.get("reason") or status.get("phase") or "Unknown")


def operation_text(operation: object) -> str | None:
    """Long work under way on an object (its ``status.operation``), in one line; None
    when there is none. With no total known, the count and the rate.

    >>> operation_text({"action": "Deleting volume scratch", "done": 12000, "total": None,
    ...                 "unit": "entries", "ratePerSecond": 4000.4})
    'Deleting volume scratch: 12,000 entries (4,000/s)'
    >>> operation_text({"action": "Deleting volume scratch", "done": 12000, "total": 50000,
    ...                 "unit": "entries"})
    'Deleting volume scratch: 12,000 of 50,000 entries (24%)'
    """
    if not isinstance(operation, dict) or not operation.get("action"):
        return None
    done, total = operation.get("done"), operation.get("total")
    unit, rate = str(operation.get("unit") or "entries"), operation.get("ratePerSecond")
    if not isinstance(done, int):
        return str(operation["action"])
    text = f"{operation['action']}: {done:,}"
    if isinstance(total, int) and total > 0:
        return f"{text} of {total:,} {unit} ({min(done * 100 // total, 100)}%)"
    text += f" {unit}"
    if isinstance(rate, int | float):
        text += f" ({rate:,.0f}/s)"
    return text


def _ready(pod: dict[str, Any]) -> str:
    """kubectl's READY: ready containers of all; ``-`` for a pod volfs runs none of."""
    statuses = (pod.get("status") or {}).get("containerStatuses")
    if statuses is None:
        return "-"
    ready = sum(1 for s in statuses if isinstance(s, dict) and s.get("ready"))
    return f"{ready}/{len(statuses)}"


def volume_statuses(pod: dict[str, Any]) -> list[dict[str, Any]]:
    """``status.volumes`` of a pod, keeping only well-formed entries."""
    volumes = (pod.get("status") or {}).get("volumes") or []
    return [v for v in volumes if isinstance(v, dict)]


def dump(obj: Any, output: str) -> str:
    """``-o json`` / ``-o yaml``, keys sorted as kubectl sorts them."""
    if output == "json":
        return json.dumps(obj, indent=4, sort_keys=True, ensure_ascii=False)
    text = yaml.safe_dump(obj, sort_keys=True, default_flow_style=False, allow_unicode=True)
    return text.rstrip("\n")


def server_table(
    answer: dict[str, Any], now: datetime, *, all_namespaces: bool, wide: bool
) -> str:
    """A ``meta.k8s.io`` Table from the server, printed as ``kubectl get`` prints it.

    Columns of priority 0, and those of priority 1 too when ``wide``; headers in
    upper case; NAMESPACE first when ``all_namespaces`` (read off each row's object
    metadata). An answer that is not a Table (a plain object or list) gets NAME and AGE.
    """
    if answer.get("kind") != "Table":
        items = answer.get("items") if "items" in answer else [answer]
        objects = [o for o in items or [] if isinstance(o, dict)]
        rows: list[list[str]] = [[str((o.get("metadata") or {}).get("name", "")),
                                  age((o.get("metadata") or {}).get("creationTimestamp"), now)]
                                 for o in objects]
        header = ["NAME", "AGE"]
        metas = [o.get("metadata") or {} for o in objects]
    else:
        definitions = [d for d in answer.get("columnDefinitions") or [] if isinstance(d, dict)]
        shown = [i for i, d in enumerate(definitions)
                 if int(d.get("priority") or 0) == 0 or wide]
        header = [str(definitions[i].get("name", "")).upper() for i in shown]
        rows, metas = [], []
        for row in answer.get("rows") or []:
            cells = row.get("cells") or []
            rows.append([_cell(cells[i] if i < len(cells) else None) for i in shown])
            metas.append(((row.get("object") or {}).get("metadata")) or {})
    if all_namespaces:
        header.insert(0, "NAMESPACE")
        for row, meta in zip(rows, metas, strict=True):
            row.insert(0, str(meta.get("namespace") or ""))
    return table(header, rows)


def table_rows(answer: dict[str, Any]) -> int:
    """How many objects a Table (or a list, or one object) holds."""
    if answer.get("kind") == "Table":
        return len(answer.get("rows") or [])
    if "items" in answer:
        return len(answer.get("items") or [])
    return 1


def _cell(value: Any) -> str:
    """A cell as kubectl prints one: ``<none>`` for nothing, booleans in lower case."""
    if value is None:
        return "<none>"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ",".join(_cell(v) for v in value)
    return str(value)
