"""``volfs describe``: pods, PersistentVolumes, claims, StorageClasses,
ReplicationControllers and StatefulSets as kubectl describes them, each with its
Events at the end."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from volfs.api import format_quantity, parse_quantity
from volfs.api.times import age, parse_timestamp
from volfs.cli.printers import format_usage, operation_text, volume_statuses

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


def describe_pod(pod: dict[str, Any], events: Sequence[dict[str, Any]] = (),
                 now: datetime | None = None) -> str:
    """The text of ``volfs describe pod``: the pod, then ``events`` about it.

    Reads ``metadata`` (name, namespace, uid, creationTimestamp, labels),
    ``spec.containers[].volumeMounts``, ``spec.volumes`` (the source of each
    volume) and ``status`` (``phase``, ``message``, ``startTime``, ``volumes[]``: path,
    medium, sizeLimitBytes, usedBytes; ``operation``: the wipe under way while the pod
    is Terminating).
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
    terminating = metadata.get("deletionTimestamp")
    lines.append((0, "Status", "Terminating" if terminating else
                  str(status.get("phase") or "Unknown")))
    if status.get("reason"):
        lines.append((0, "Reason", str(status["reason"])))
    if status.get("message"):
        lines.append((0, "Message", str(status["message"])))
    operation = operation_text(status.get("operation"))
    if operation:
        lines.append((0, "Operation", operation))
    lines += _containers(spec.get("containers") or [])
    lines += _volumes(spec.get("volumes") or [], volume_statuses(pod))
    return _with_events(lines, events, now)


def describe_volume(pv: dict[str, Any], events: Sequence[dict[str, Any]] = (),
                    now: datetime | None = None) -> str:
    """The text of ``volfs describe pv``: kubectl's fields, the NFS source, the events."""
    metadata, spec = pv.get("metadata") or {}, pv.get("spec") or {}
    status = pv.get("status") or {}
    ref = spec.get("claimRef")
    claim = f"{ref.get('namespace', '')}/{ref.get('name', '')}" if isinstance(ref, dict) else ""
    lines: Lines = [(0, "Name", str(metadata.get("name", "")))]
    lines += _labels(metadata.get("labels"))
    lines += _annotations(metadata.get("annotations"))
    lines += [
        (0, "StorageClass", str(spec.get("storageClassName") or "")),
        (0, "Status", str(status.get("phase") or "")),
        (0, "Claim", claim),
        (0, "Reclaim Policy", str(spec.get("persistentVolumeReclaimPolicy") or "")),
        (0, "Access Modes", _access_modes(spec.get("accessModes"))),
        (0, "VolumeMode", str(spec.get("volumeMode") or "Filesystem")),
        (0, "Capacity", str((spec.get("capacity") or {}).get("storage") or "")),
        (0, "Message", str(status.get("message") or "")),
    ]
    operation = operation_text(status.get("operation"))
    if operation:
        lines.append((0, "Operation", operation))
    lines += [
        (0, "Source", None),
    ]
    nfs = spec.get("nfs")
    if isinstance(nfs, dict):
        lines += [
            (2, "Type", _TYPES["nfs"]),
            (2, "Server", str(nfs.get("server", ""))),
            (2, "Path", str(nfs.get("path", ""))),
            (2, "ReadOnly", str(bool(nfs.get("readOnly"))).lower()),
        ]
    else:
        lines.append((2, "Type", "<unknown>"))
    return _with_events(lines, events, now)


def describe_claim(pvc: dict[str, Any], pods: Sequence[dict[str, Any]] = (),
                   events: Sequence[dict[str, Any]] = (), now: datetime | None = None) -> str:
    """The text of ``volfs describe pvc``.

    ``pods`` are the pods of the claim's namespace: those whose volumes name the
    claim are listed under ``Used By``. ``Used`` is shown when the status has
    ``usedBytes`` (what the claim's volume holds).
    """
    metadata, spec = pvc.get("metadata") or {}, pvc.get("spec") or {}
    status = pvc.get("status") or {}
    bound = status.get("phase") == "Bound"
    capacity = (status.get("capacity") or {}).get("storage") if bound else ""
    lines: Lines = [
        (0, "Name", str(metadata.get("name", ""))),
        (0, "Namespace", str(metadata.get("namespace", ""))),
        (0, "StorageClass", str(spec.get("storageClassName") or "")),
        (0, "Status", str(status.get("phase") or "")),
        (0, "Volume", str(spec.get("volumeName") or "")),
    ]
    lines += _labels(metadata.get("labels"))
    lines += _annotations(metadata.get("annotations"))
    lines += [
        (0, "Capacity", str(capacity or "")),
        (0, "Access Modes", _access_modes(status.get("accessModes")) if bound else ""),
        (0, "VolumeMode", str(spec.get("volumeMode") or "Filesystem")),
    ]
    users = claim_users(pods, str(metadata.get("name", "")))
    lines.append((0, "Used By", users[0] if users else "<none>"))
    lines += [(0, "", name) for name in users[1:]]
    if "usedBytes" in status:
        lines.append((0, "Used", format_usage(status.get("usedBytes"), _bytes(capacity))))
    return _with_events(lines, events, now)


def describe_class(sc: dict[str, Any], events: Sequence[dict[str, Any]] = (),
                   now: datetime | None = None) -> str:
    """The text of ``volfs describe sc``."""
    metadata = sc.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    default = any(annotations.get(key) == "true" for key in _DEFAULT_CLASS_ANNOTATIONS)
    expansion = sc.get("allowVolumeExpansion")
    lines: Lines = [
        (0, "Name", str(metadata.get("name", ""))),
        (0, "IsDefaultClass", "Yes" if default else "No"),
        (0, "Annotations", _pairs(annotations)),
        (0, "Provisioner", str(sc.get("provisioner") or "")),
        (0, "Parameters", _pairs(sc.get("parameters"))),
        (0, "AllowVolumeExpansion", "<unset>" if expansion is None else str(expansion)),
        (0, "MountOptions", None if sc.get("mountOptions") else "<none>"),
    ]
    if sc.get("mountOptions"):
        lines += [(2, "", str(option)) for option in sc["mountOptions"]]
    lines += [
        (0, "ReclaimPolicy", str(sc.get("reclaimPolicy") or "Delete")),
        (0, "VolumeBindingMode", str(sc.get("volumeBindingMode") or "Immediate")),
    ]
    return _with_events(lines, events, now)


def describe_workload(obj: dict[str, Any], pods: Sequence[dict[str, Any]] = (),
                      events: Sequence[dict[str, Any]] = (), now: datetime | None = None) -> str:
    """The text of ``volfs describe rc`` and ``describe sts``: the selector, replicas
    desired and current, the pods' phases (of ``pods``, those it controls), the pod
    template, the claim templates."""
    metadata, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    status = obj.get("status") or {}
    uid = metadata.get("uid")
    mine = [p for p in pods if any(
        isinstance(r, dict) and r.get("uid") == uid and r.get("controller")
        for r in (p.get("metadata") or {}).get("ownerReferences") or [])]
    phases = [str((p.get("status") or {}).get("phase") or "Unknown") for p in mine]
    selector = spec.get("selector") or {}
    if isinstance(selector.get("matchLabels"), dict):
        selector = selector["matchLabels"]
    lines: Lines = [
        (0, "Name", str(metadata.get("name", ""))),
        (0, "Namespace", str(metadata.get("namespace", ""))),
        (0, "CreationTimestamp", _time(metadata.get("creationTimestamp"))),
        (0, "Selector", _pairs(selector)),
    ]
    lines += _labels(metadata.get("labels"))
    lines += _annotations(metadata.get("annotations"))
    lines += [
        (0, "Replicas", f"{status.get('replicas', 0)} current / {spec.get('replicas', 0)} "
                        "desired"),
        (0, "Pods Status", " / ".join(f"{phases.count(phase)} {phase}" for phase in (
            "Running", "Pending", "Succeeded", "Failed"))),
    ]
    if spec.get("podManagementPolicy"):
        lines.append((0, "Update Strategy", "(template changes apply to new pods)"))
    template = spec.get("template") or {}
    lines.append((0, "Pod Template", None))
    lines += [(1, key, value) for _, key, value in _labels(
        (template.get("metadata") or {}).get("labels"))]
    lines += [(indent + 1, key, value) for indent, key, value in _containers(
        (template.get("spec") or {}).get("containers") or [])]
    claims = spec.get("volumeClaimTemplates")
    if isinstance(claims, list):
        lines.append((0, "Volume Claims", None if claims else "<none>"))
        for claim in claims:
            claim_spec = claim.get("spec") or {}
            lines += [
                (1, "Name", str((claim.get("metadata") or {}).get("name", ""))),
                (1, "StorageClass", str(claim_spec.get("storageClassName") or "")),
                (1, "Capacity", str(((claim_spec.get("resources") or {}).get("requests")
                                     or {}).get("storage") or "")),
                (1, "Access Modes", _access_modes(claim_spec.get("accessModes"))),
            ]
    return _with_events(lines, events, now)


def claim_users(pods: Sequence[dict[str, Any]], claim: str) -> list[str]:
    """The names of the pods whose ``spec.volumes`` name the claim ``claim``."""
    users = []
    for pod in pods:
        for volume in (pod.get("spec") or {}).get("volumes") or []:
            source = volume.get("persistentVolumeClaim") if isinstance(volume, dict) else None
            if isinstance(source, dict) and source.get("claimName") == claim:
                users.append(str((pod.get("metadata") or {}).get("name", "")))
                break
    return users


def events_text(events: Sequence[dict[str, Any]], now: datetime | None = None) -> str:
    """kubectl's Events section: ``Type Reason Age From Message``, oldest first.

    Age is since ``lastTimestamp``; an event seen more than once reads
    ``5s (x3 over 2m)``. No events is ``Events:  <none>``.
    """
    now = now or datetime.now(UTC)
    if not events:
        return "Events:  <none>"
    ordered = sorted(events, key=_last_seen)
    rows = [["Type", "Reason", "Age", "From", "Message"],
            ["----", "------", "----", "----", "-------"]]
    for event in ordered:
        count = event.get("count")
        last = event.get("lastTimestamp") or event.get("eventTime")
        interval = age(last, now)
        if isinstance(count, int) and count > 1:
            first = event.get("firstTimestamp") or event.get("eventTime")
            interval = f"{interval} (x{count} over {age(first, now)})"
        source = (event.get("source") or {}).get("component") or event.get(
            "reportingController") or event.get("reportingComponent") or ""
        rows.append([str(event.get("type") or ""), str(event.get("reason") or ""), interval,
                     str(source), " ".join(str(event.get("message") or "").split())])
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["Events:"]
    for row in rows:
        cells = [cell.ljust(width + 2) for cell, width in zip(row[:4], widths, strict=True)]
        lines.append(("  " + "".join(cells) + row[4]).rstrip())
    return "\n".join(lines)


def _last_seen(event: dict[str, Any]) -> datetime:
    when = parse_timestamp(event.get("lastTimestamp") or event.get("eventTime")
                           or event.get("firstTimestamp"))
    return when or datetime.min.replace(tzinfo=UTC)


def _with_events(lines: Lines, events: Sequence[dict[str, Any]], now: datetime | None) -> str:
    if not events:  # aligned with the fields above it, as kubectl prints it
        return _render([*lines, (0, "Events", "<none>")])
    return _render(lines) + "\n" + events_text(events, now)


_DEFAULT_CLASS_ANNOTATIONS = ("storageclass.kubernetes.io/is-default-class",
                              "storageclass.beta.kubernetes.io/is-default-class")
_ACCESS_MODES = {"ReadWriteOnce": "RWO", "ReadOnlyMany": "ROX", "ReadWriteMany": "RWX",
                 "ReadWriteOncePod": "RWOP"}


def _access_modes(modes: object) -> str:
    if not isinstance(modes, list):
        return ""
    return ",".join(_ACCESS_MODES.get(str(mode), str(mode)) for mode in modes)


def _annotations(annotations: object) -> Lines:
    """``key: value``, one a line, as kubectl prints annotations."""
    if not isinstance(annotations, dict) or not annotations:
        return [(0, "Annotations", "<none>")]
    pairs = [f"{key}: {value}" for key, value in sorted(annotations.items())]
    lines: Lines = [(0, "Annotations", pairs[0])]
    return lines + [(0, "", pair) for pair in pairs[1:]]


def _pairs(mapping: object) -> str:
    """``a=1,b=2``, sorted by key; ``<none>`` for nothing."""
    if not isinstance(mapping, dict) or not mapping:
        return "<none>"
    return ",".join(f"{key}={value}" for key, value in sorted(mapping.items()))


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
        lines.append((2, "Used", format_usage(state.get("usedBytes"),
                                              state.get("sizeLimitBytes"))))
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


def _bytes(quantity: object) -> int | None:
    """A capacity such as ``1Gi`` in bytes; None for none, or for one that is no quantity."""
    if not isinstance(quantity, str | int) or isinstance(quantity, bool) or quantity == "":
        return None
    try:
        return parse_quantity(quantity)
    except ValueError:
        return None


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
