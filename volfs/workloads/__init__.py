"""Workload controllers: ReplicationControllers and StatefulSets, stored and kept true.

They sit above the lifecycle: a replica is made and removed through the pod manager
(so its volumes, hooks, claims and containers are those of any pod), and a
StatefulSet's claims through the storage controller (so the binder binds or
provisions them as any claim).
"""

from volfs.workloads.controller import PROPAGATION_POLICIES, Workloads
from volfs.workloads.store import WorkloadStore

__all__ = ["PROPAGATION_POLICIES", "WorkloadStore", "Workloads"]
