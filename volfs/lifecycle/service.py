"""The interface the control API calls: create, read, update and delete pods.

Objects cross this boundary as plain JSON-able dicts shaped like Kubernetes v1
objects (``metadata.uid``, ``metadata.resourceVersion``,
``metadata.creationTimestamp``, ``status``). Each pod's ``status.volumes`` lists,
per volume, ``{"name", "kind", "path", "medium", "sizeLimitBytes", "usedBytes"}``
where ``path`` is the volume's directory on the host (under the volfs root).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from volfs.api import Pod


@dataclass
class DeleteResult:
    """What a delete removed, and what went wrong without stopping it."""

    object: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


class PodService(Protocol):
    async def create_pod(self, pod: Pod) -> dict[str, Any]:
        """Set up every volume, run the create hooks, persist; all or nothing.

        Raises AlreadyExists, Invalid, SetupFailed.
        """

    async def delete_pod(self, namespace: str, name: str,
                         grace_seconds: float | None = None) -> DeleteResult:
        """Stop the pod's containers (if volfs runs them), run the delete hooks, tear the
        volumes down, forget the pod. While the volumes are torn down the pod is still
        served, with its ``deletionTimestamp`` and the wipe under way in
        ``status.operation`` (``action``, ``done``, ``total`` or None, ``unit``,
        ``startedAt``, ``ratePerSecond``). The containers get ``grace_seconds`` between
        SIGTERM and SIGKILL, by default the pod's ``terminationGracePeriodSeconds``
        (30 when unset). Raises NotFound."""

    async def get_pod(self, namespace: str, name: str) -> dict[str, Any]:
        """Raises NotFound."""

    async def update_pod(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Replace the stored pod named by ``obj``'s metadata with ``obj``.

        Only what Kubernetes lets a pod update change is accepted: labels,
        annotations, container images and the like; the spec otherwise (its volumes
        above all) is refused with Invalid. ``status``, ``uid`` and
        ``creationTimestamp`` are kept from the stored pod. A
        ``metadata.resourceVersion`` in ``obj`` must match the stored one.

        Raises NotFound, Conflict, Invalid.
        """

    async def list_pods(self, namespace: str | None) -> list[dict[str, Any]]:
        """All pods, or those of one namespace, oldest first."""
