"""What an update may change in a stored pod: Kubernetes' rules (``ValidatePodUpdate``).

A pod's spec is fixed once it exists, except for the few fields the API server lets
an update touch: container images, ``activeDeadlineSeconds``, added tolerations and
a ``terminationGracePeriodSeconds`` of 1 replacing a negative one. Its volumes in
particular never change: the volumes a kubelet (or volfs) set up stay as they are
until the pod is deleted. Metadata (labels, annotations) may change freely; identity
(name, namespace, uid) may not.
"""

from __future__ import annotations

import copy
from typing import Any

from volfs.api.errors import field_path

Cause = tuple[str, str]

POD_SPEC_FORBIDDEN = (
    "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,"
    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` "
    "(only additions to existing tolerations),`spec.terminationGracePeriodSeconds` "
    "(allow it to be set to 1 if it was previously negative)"
)


def pod_update_causes(old: dict[str, Any], new: dict[str, Any]) -> list[Cause]:
    """Why updating the stored pod ``old`` to ``new`` is refused (empty: it is allowed).

    Both are Kubernetes pod objects (``metadata``, ``spec``) in the same normal form
    (``Pod.to_k8s()``).

    >>> old = {"metadata": {"name": "web", "uid": "u"}, "spec": {"volumes": [{"name": "a"}]}}
    >>> pod_update_causes(old, {**old, "metadata": {"name": "web", "labels": {"x": "y"}}})
    []
    >>> pod_update_causes(old, {**old, "spec": {"volumes": []}})[0][0]
    'spec'
    """
    causes: list[Cause] = []
    old_meta, new_meta = old.get("metadata") or {}, new.get("metadata") or {}
    for key in ("name", "namespace", "uid"):
        given = new_meta.get(key)
        if given and old_meta.get(key) and given != old_meta[key]:
            causes.append((f"metadata.{key}", f'Invalid value: "{given}": field is immutable'))
    old_spec, new_spec = old.get("spec") or {}, new.get("spec") or {}
    masked = _mask_allowed(old_spec, new_spec)
    if masked != old_spec:
        where = _first_difference(old_spec, masked, ["spec"])
        causes.append(("spec", f"{POD_SPEC_FORBIDDEN} (changed: {where})"))
    return causes


def _mask_allowed(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``new`` with every change an update may make put back to ``old``'s value."""
    masked = copy.deepcopy(new)
    for key in ("containers", "initContainers"):
        olds, news = old.get(key) or [], masked.get(key) or []
        if len(olds) == len(news):
            for before, after in zip(olds, news, strict=True):
                if isinstance(before, dict) and isinstance(after, dict):
                    _put_back(after, before, "image")
    if masked.get("activeDeadlineSeconds") is not None:
        _put_back(masked, old, "activeDeadlineSeconds")
    tolerations_before = old.get("tolerations") or []
    tolerations_after = masked.get("tolerations") or []
    if tolerations_after[:len(tolerations_before)] == tolerations_before:
        _put_back(masked, old, "tolerations")
    grace_before = old.get("terminationGracePeriodSeconds")
    if (isinstance(grace_before, int) and grace_before < 0
            and masked.get("terminationGracePeriodSeconds") == 1):
        _put_back(masked, old, "terminationGracePeriodSeconds")
    return masked


def _put_back(target: dict[str, Any], source: dict[str, Any], key: str) -> None:
    if key in source:
        target[key] = copy.deepcopy(source[key])
    else:
        target.pop(key, None)


def _first_difference(old: Any, new: Any, path: list[str | int]) -> str:
    """The dotted path of the first place ``old`` and ``new`` differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in list(old) + [k for k in new if k not in old]:
            if old.get(key) != new.get(key):
                return _first_difference(old.get(key), new.get(key), [*path, key])
    if isinstance(old, list) and isinstance(new, list):
        for index, (before, after) in enumerate(zip(old, new, strict=False)):
            if before != after:
                return _first_difference(before, after, [*path, index])
        if len(old) != len(new):
            return field_path([*path, min(len(old), len(new))])
    return field_path(path)
