"""Running a pod's containers: the runtime protocol and its Docker implementation.

The lifecycle depends on :class:`ContainerRuntime` only; ``volfs.runtime.docker``
(the Docker Engine API through the ``docker`` SDK) is wired in by the daemon.
"""

from volfs.runtime.base import (
    DEFAULT_GRACE_SECONDS,
    LABEL_CONTAINER,
    LABEL_NAME,
    LABEL_NAMESPACE,
    LABEL_OWNER,
    LABEL_UID,
    RUN_ANNOTATION,
    Bind,
    ContainerPlan,
    ContainerRuntime,
    ContainerState,
    PodPlan,
    RunRefused,
    RuntimeFailed,
    RuntimeUnavailable,
    check_runnable,
    container_name,
    expand,
    plan_pod,
    pod_phase,
    prepare_binds,
    runs_containers,
)

__all__ = [
    "DEFAULT_GRACE_SECONDS",
    "LABEL_CONTAINER",
    "LABEL_NAME",
    "LABEL_NAMESPACE",
    "LABEL_OWNER",
    "LABEL_UID",
    "RUN_ANNOTATION",
    "Bind",
    "ContainerPlan",
    "ContainerRuntime",
    "ContainerState",
    "PodPlan",
    "RunRefused",
    "RuntimeFailed",
    "RuntimeUnavailable",
    "check_runnable",
    "container_name",
    "expand",
    "plan_pod",
    "pod_phase",
    "prepare_binds",
    "runs_containers",
]
