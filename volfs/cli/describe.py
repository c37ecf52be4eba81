"""``volfs describe pod``: a pod and its volumes as kubectl describes them."""

from __future__ import annotations

from typing import Any

from volfs.api import format_quantity
from volfs.cli.printers import format_bytes, parse_timestamp, volume_statuses

# kubectl's wording for each volume source.
_TYPES = {
    "emptyDir": "EmptyDir (a temporary directory that shares a pod's lifetime)",
    "hostPath": "HostPath (bare host directory volume)",
    "nfs": "NFS (an NFS mount that lasts the lifetime of a pod)",
    "persistentVolumeClaim": (
        "PersistentVolumeClaim (a reference to a PersistentVolumeClaim in the same namespace)"
    ),
}

# (indent, key, value): value None is a heading ("Volumes:"); key "" continues the
# value column of the lines above it (a second label), or is a line of its own.
Lines = list[tuple[int, str, str | None]]


def describe_pod(pod: dict[str, Any]) -> str:
    """The text of ``volfs describe pod``.

    Reads ``metadata`` (name, namespace, uid, creationTimestamp, labels),
    ``spec.containers[].volumeMounts``, ``spec.volumes`` (the source of each
    volume) and ``status`` (``phase``, ``startTime``, ``volumes[]``: path, medium,
    sizeLimitBytes, usedBytes).
    """
    metadata = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    lines: Lines = [
        (0, "Name", str(metadata.get("name", ""))),
        (0, "Namespace", str(metadata.get("namespace", ""))),
        (0, "UID", str(metadata.get("uid") or "<none>")),
        (0, "Start Time", _time(status.get("startTime") or metadata.get("creationTimestamp"))),
    ]
    lines += _labels(metadata.get("labels"))
    lines.append((0, "Status", str(status.get("phase") or "Unknown")))
    lines += _containers(spec.get("containers") or [])
    lines += _volumes(spec.get("volumes") or [], volume_statuses(pod))
    return _render(lines)


def _time(value: object) -> str:
    when = parse_timestamp(value)
    return when.astimezone().strftime("%a, %d %b %Y %H:%M:%S %z") if when else "<unknown>"


def _labels(labels: object) -> Lines:
    if not isinstance(labels, dict) or not labels:
        return [(0, "Labels", "<none>")]
    pairs = [f"{key}={value}" for key, value in sorted(labels.items())]
    lines: Lines = [(0, "Labels", pairs[0])]
    return lines + [(0, "", pair) for pair in pairs[1:]]


def _containers(containers: list[Any]) -> Lines:
    lines: Lines = [(0, "Containers", None)]
    for container in containers:
        if not isinstance(container, dict):
            continue
        lines.append((1, str(container.get("name", "")), None))
        if container.get("image"):
            lines.append((2, "Image", str(container["image"])))
        mounts = [m for m in container.get("volumeMounts") or [] if isinstance(m, dict)]
        if not mounts:
            lines.append((2, "Mounts", "<none>"))
            continue
        lines.append((2, "Mounts", None))
        lines += [(2, "", _mount(mount)) for mount in mounts]  # under the heading
    return lines


def _mount(mount: dict[str, Any]) -> str:
    """``/data from scratch (rw)``, kubectl's words for a volume mount."""
    flags = ["ro" if mount.get("readOnly") else "rw"]
    if mount.get("subPath"):
        flags.append(f'path="{mount["subPath"]}"')
    return f"{mount.get('mountPath', '')} from {mount.get('name', '')} ({','.join(flags)})"


def _volumes(volumes: list[Any], statuses: list[dict[str, Any]]) -> Lines:
    by_name = {str(v.get("name")): v for v in statuses}
    lines: Lines = [(0, "Volumes", None)]
    for volume in volumes:
        if not isinstance(volume, dict):
            continue
        name = str(volume.get("name", ""))
        state = by_name.get(name, {})
        source = next((key for key in _TYPES if key in volume), None)
        lines.append((1, name, None))
        kind = _TYPES[source] if source else str(state.get("kind") or "<unknown>")
        lines.append((2, "Type", kind))
        lines += _source_lines(source, volume.get(source) if source else None, state)
        lines.append((2, "Path", str(state.get("path") or "<not set up>")))
        lines.append((2, "Used", format_bytes(state.get("usedBytes"))))
    if len(lines) == 1:
        lines[0] = (0, "Volumes", "<none>")
    return lines


def _source_lines(source: str | None, spec: Any, state: dict[str, Any]) -> Lines:
    spec = spec if isinstance(spec, dict) else {}
    if source == "emptyDir":
        medium = spec.get("medium", state.get("medium")) or ""
        return [(2, "Medium", str(medium)), (2, "SizeLimit", _size(state, spec))]
    if source == "hostPath":
        return [
            (2, "HostPath", str(spec.get("path", ""))),
            (2, "HostPathType", str(spec.get("type", ""))),
        ]
    if source == "nfs":
        return [
            (2, "Server", str(spec.get("server", ""))),
            (2, "Export", str(spec.get("path", ""))),
            (2, "ReadOnly", str(bool(spec.get("readOnly"))).lower()),
        ]
    if source == "persistentVolumeClaim":
        return [
            (2, "ClaimName", str(spec.get("claimName", ""))),
            (2, "ReadOnly", str(bool(spec.get("readOnly"))).lower()),
        ]
    return []


def _size(state: dict[str, Any], spec: dict[str, Any]) -> str:
    limit = state.get("sizeLimitBytes")
    if isinstance(limit, int) and not isinstance(limit, bool):
        return format_quantity(limit)
    return str(spec["sizeLimit"]) if spec.get("sizeLimit") else "<unset>"


def _render(lines: Lines) -> str:
    """Indent two spaces a level; align the values of each run of sibling keys."""
    out: list[str] = []
    index = 0
    while index < len(lines):
        indent = lines[index][0]
        end = index
        while end < len(lines) and lines[end][0] == indent and lines[end][2] is not None:
            end += 1
        if end == index:  # a heading
            out.append("  " * indent + lines[index][1] + ":")
            index += 1
            continue
        run = lines[index:end]
        width = max((len(key) + 1 for _, key, _ in run if key), default=0)
        for _, key, value in run:
            label = f"{key}:" if key else ""
            out.append(("  " * indent + label.ljust(width) + "  " + str(value)).rstrip())
        index = end
    return "\n".join(out)
