"""What must hold of a volfs daemon's state whatever was done to it: a checker that tests
and scripts share (``problems`` returns one line per broken rule; none: consistent).

- every Bound claim names a PV, and that PV's ``claimRef`` names the claim back (uid too);
- no PV is named by two claims, and no claim's PV is bound to another claim;
- a Bound PV's claim exists and names it;
- every directory of a pod under the state dir's EmptyDir trees (disk and memory) belongs
  to a live pod, and every directory a class provisioned on an NFS export to a live PV;
- the mount's synthetic tree (``<root>/pods``) lists exactly the live pods;
- the daemon holds no more descriptors than ``fd_baseline`` plus ``fd_slack``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Object = dict[str, Any]


@dataclass
class Snapshot:
    """The objects the API lists, and where the daemon keeps things on disk."""

    pods: list[Object]
    claims: list[Object]
    volumes: list[Object]
    root: Path  # the FUSE mount
    volume_dirs: list[Path]  # EmptyDir trees: <dir>/<pod-uid>/...
    provisioned: list[Path] = field(default_factory=list)  # NFS dirs classes provisioned
    daemon_pid: int | None = None
    fd_baseline: int | None = None
    fd_slack: int = 8


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def problems(s: Snapshot) -> list[str]:
    return [*binding_problems(s.claims, s.volumes), *disk_problems(s), *fd_problems(s)]


def _key(obj: Object) -> tuple[str, str]:
    meta = obj["metadata"]
    return meta.get("namespace", ""), meta["name"]


def binding_problems(claims: Iterable[Object], volumes: Iterable[Object]) -> list[str]:
    found = []
    pvs = {pv["metadata"]["name"]: pv for pv in volumes}
    by_key = {_key(c): c for c in claims}
    claimed: dict[str, list[str]] = {}
    for (namespace, name), claim in sorted(by_key.items()):
        phase = (claim.get("status") or {}).get("phase")
        volume = (claim.get("spec") or {}).get("volumeName")
        if volume:
            claimed.setdefault(volume, []).append(f"{namespace}/{name}")
        if phase != "Bound":
            continue
        pv = pvs.get(volume or "")
        if pv is None:
            found.append(f"claim {namespace}/{name} is Bound to PV {volume!r}, which is gone")
            continue
        ref = pv["spec"].get("claimRef") or {}
        if (ref.get("namespace"), ref.get("name")) != (namespace, name) or (
                ref.get("uid") and ref["uid"] != claim["metadata"]["uid"]):
            found.append(f"claim {namespace}/{name} is Bound to PV {volume}, whose claimRef "
                         f"is {ref.get('namespace')}/{ref.get('name')} ({ref.get('uid')})")
    for volume, names in sorted(claimed.items()):
        if len(names) > 1:
            found.append(f"PV {volume} is named by {len(names)} claims: {', '.join(names)}")
    for name, pv in sorted(pvs.items()):
        if (pv.get("status") or {}).get("phase") != "Bound":
            continue
        ref = pv["spec"].get("claimRef") or {}
        owner = by_key.get((ref.get("namespace", ""), ref.get("name", "")))
        if owner is None:
            found.append(f"PV {name} is Bound to claim {ref.get('namespace')}/"
                         f"{ref.get('name')}, which is gone")
        elif owner["spec"].get("volumeName") != name:
            found.append(f"PV {name} is Bound to claim {'/'.join(_key(owner))}, which names "
                         f"{owner['spec'].get('volumeName')!r}")
    return found


def disk_problems(s: Snapshot) -> list[str]:
    found = []
    live = {pod["metadata"]["uid"] for pod in s.pods}
    for top in s.volume_dirs:
        for uid in sorted(os.listdir(top)) if top.is_dir() else []:
            if uid not in live:
                found.append(f"{top / uid}: the volumes of a pod that is gone")
    listed = set(os.listdir(s.root / "pods")) if (s.root / "pods").is_dir() else set()
    if listed != live:
        found.append(f"{s.root}/pods lists {len(listed)} pods, {len(live)} live: extra "
                     f"{sorted(listed - live)[:5]}, missing {sorted(live - listed)[:5]}")
    paths = {pv["spec"]["nfs"]["path"].rstrip("/") for pv in s.volumes
             if (pv.get("spec") or {}).get("nfs")}
    for share in s.provisioned:
        made = [d for ns in sorted(share.iterdir()) if ns.is_dir() for d in sorted(ns.iterdir())]
        for directory in made:
            if str(directory) not in paths:
                found.append(f"{directory}: provisioned for a PV that is gone")
        for path in sorted(paths):
            if path.startswith(f"{share}/") and not Path(path).is_dir():
                found.append(f"{path}: the directory of a live PV is gone")
    return found


def fd_problems(s: Snapshot) -> list[str]:
    if s.daemon_pid is None or s.fd_baseline is None:
        return []
    count = open_fds(s.daemon_pid)
    if count > s.fd_baseline + s.fd_slack:
        return [f"the daemon holds {count} descriptors, {s.fd_baseline} at the start: "
                f"{what_fds_are(s.daemon_pid)}"]
    return []


def _socket_kinds(pid: int) -> dict[str, str]:
    """Socket inode -> "tcp to PORT" / "unix PATH", from the process's /proc/net tables."""
    kinds: dict[str, str] = {}
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            kinds[fields[9]] = f"tcp to port {int(fields[2].rsplit(':', 1)[1], 16)}"
    try:
        for line in Path(f"/proc/{pid}/net/unix").read_text().splitlines()[1:]:
            fields = line.split()
            kinds[fields[6]] = f"unix {fields[7] if len(fields) > 7 else '(unnamed)'}"
    except OSError:
        pass
    return kinds


def what_fds_are(pid: int) -> str:
    """What a process's descriptors lead to, counted by kind (for the failure message)."""
    sockets = _socket_kinds(pid)
    kinds: dict[str, int] = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            kind = sockets.get(target[8:-1], "socket")
        else:
            kind = target.split(":", 1)[0] if ":" in target[:12] else os.path.dirname(target)
        kinds[kind] = kinds.get(kind, 0) + 1
    return ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items(), key=lambda i: -i[1]))
