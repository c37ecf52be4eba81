"""Getting the mount point ready: replace a stale mount, refuse a live one."""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

MOUNT_OPTIONS = {"fsname=volfs", "subtype=volfs", "allow_other", "default_permissions"}


class MountPointBusy(Exception):
    """Something alive is mounted where volfs should mount; ``str()`` is one line."""


def prepare_mount_point(root: Path) -> None:
    """Make ``root`` an empty place to mount on.

    A FUSE mount whose daemon died answers ENOTCONN ("Transport endpoint is not
    connected"): it is detached lazily and replaced. A mount that answers is
    someone's live filesystem: refused.
    """
    try:
        # statfs always reaches the filesystem (stat may be answered from the
        # kernel's cache), so it tells a dead FUSE daemon from a live one.
        os.statvfs(root)
    except FileNotFoundError:
        root.mkdir(parents=True, exist_ok=True)
        return
    except OSError as exc:
        if exc.errno != errno.ENOTCONN:
            raise
        unmount_lazily(root)
        os.statvfs(root)  # still broken: let the error speak
    if os.path.ismount(root):
        raise MountPointBusy(
            f"{root} is already a live mount ({_fstype(root)}); stop what serves it "
            f"(another volfs?) or choose another --root")


def unmount_lazily(root: Path) -> None:
    subprocess.run(["fusermount3", "-uz", str(root)], check=False, capture_output=True)


def _fstype(root: Path) -> str:
    target = str(root.resolve())
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            fields = line.split()
            if fields[4] == target:
                sep = fields.index("-")
                return f"{fields[sep + 1]} from {fields[sep + 2]}"
    return "unknown type"
