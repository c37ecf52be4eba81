"""The synthetic part of the tree: ``pods/<uid>/volumes/<kind-dir>/<volume>``, and
``csi/<volume-id>`` for the volumes volfs's CSI endpoint made (when it serves one).

Everything above a volume's own directory is made up from what the lifecycle
layer has published: no disk behind it, read-only to every caller, and closed to
host users other than root (and the ``--tree-group``): see ``attrs.SYNTHETIC_MODE``.
"""

from __future__ import annotations

from dataclasses import dataclass

from volfs.stores.base import Store

PODS = "pods"
VOLUMES = "volumes"
CSI = "csi"  # the top-level directory of CSI volumes, and their ServedVolume.kind_dir

Path = tuple[str, ...]


@dataclass(eq=False)
class ServedVolume:
    """A volume as the fs serves it: where it sits in the tree, and its store."""

    pod_uid: str
    kind_dir: str  # kubelet's plugin directory name, e.g. "kubernetes.io~empty-dir"
    name: str
    store: Store

    @classmethod
    def csi(cls, volume_id: str, store: Store) -> ServedVolume:
        """A CSI volume: served at ``csi/<volume-id>``, belonging to no pod."""
        return cls("", CSI, volume_id, store)

    @property
    def path(self) -> Path:
        if self.kind_dir == CSI and not self.pod_uid:
            return (CSI, self.name)
        return (PODS, self.pod_uid, VOLUMES, self.kind_dir, self.name)


class Tree:
    """Which pods and volumes exist, as the synthetic directories show them."""

    def __init__(self) -> None:
        self._pods: dict[str, dict[str, dict[str, ServedVolume]]] = {}
        self._csi: dict[str, ServedVolume] | None = None  # None: no csi/ directory

    def serve_csi(self) -> None:
        """Show ``csi/`` (empty until volumes are added): the daemon serves CSI."""
        if self._csi is None:
            self._csi = {}

    def add_csi(self, volume: ServedVolume) -> None:
        self.serve_csi()
        assert self._csi is not None
        self._csi[volume.name] = volume

    def remove_csi(self, volume_id: str) -> ServedVolume | None:
        return None if self._csi is None else self._csi.pop(volume_id, None)

    def add_pod(self, pod_uid: str, volumes: list[ServedVolume]) -> None:
        kinds: dict[str, dict[str, ServedVolume]] = {}
        for volume in volumes:
            kinds.setdefault(volume.kind_dir, {})[volume.name] = volume
        self._pods[pod_uid] = kinds

    def remove_pod(self, pod_uid: str) -> list[ServedVolume]:
        kinds = self._pods.pop(pod_uid, {})
        return [volume for names in kinds.values() for volume in names.values()]

    def volumes(self, pod_uid: str) -> list[ServedVolume]:
        kinds = self._pods.get(pod_uid, {})
        return [volume for names in kinds.values() for volume in names.values()]

    def is_dir(self, path: Path) -> bool:
        """Whether ``path`` names a synthetic directory that exists now."""
        return self.children(path) is not None

    def children(self, path: Path) -> list[str] | None:
        """Names in a synthetic directory (volume roots included), or None if it is gone."""
        match path:
            case ():
                return [PODS] if self._csi is None else [CSI, PODS]
            case ("csi",) if self._csi is not None:
                return sorted(self._csi)
            case ("pods",):
                return sorted(self._pods)
            case ("pods", uid) if uid in self._pods:
                return [VOLUMES]
            case ("pods", uid, "volumes") if uid in self._pods:
                return sorted(self._pods[uid])
            case ("pods", uid, "volumes", kind) if kind in self._pods.get(uid, {}):
                return sorted(self._pods[uid][kind])
        return None

    def volume(self, path: Path) -> ServedVolume | None:
        """The volume whose root directory ``path`` names, if any."""
        match path:
            case ("pods", uid, "volumes", kind, name):
                return self._pods.get(uid, {}).get(kind, {}).get(name)
            case ("csi", volume_id) if self._csi is not None:
                return self._csi.get(volume_id)
        return None
