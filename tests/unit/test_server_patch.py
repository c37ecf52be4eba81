"""Patches: RFC 7386 merge patch, Kubernetes' strategic merge patch, RFC 6902 JSON patch;
and the pod update rules a patched pod is then checked against."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from volfs.lifecycle.updates import pod_update_causes
from volfs.server.patch import (
    OBJECT_SCHEMA,
    POD_SCHEMA,
    PatchError,
    json_patch,
    merge_patch,
    strategic_merge_patch,
)

POD: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "web", "labels": {"app": "web"}, "finalizers": ["a"]},
    "spec": {
        "containers": [
            {"name": "app", "image": "busybox",
             "volumeMounts": [{"name": "scratch", "mountPath": "/data"}],
             "env": [{"name": "A", "value": "1"}]},
            {"name": "side", "image": "busybox"},
        ],
        "volumes": [{"name": "scratch", "emptyDir": {}}, {"name": "cache", "emptyDir": {}}],
        "tolerations": [{"key": "k"}],
    },
}


def smp(patch: dict[str, Any], target: dict[str, Any] | None = None) -> dict[str, Any]:
    original = copy.deepcopy(target or POD)
    result = strategic_merge_patch(original, patch, POD_SCHEMA)
    assert original == (target or POD)  # the target is left alone
    return result


# -- RFC 7386 ------------------------------------------------------------------------------


@pytest.mark.parametrize("target, patch, result", [  # RFC 7386 appendix A
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
])
def test_merge_patch_follows_rfc_7386(target: Any, patch: Any, result: Any) -> None:
    assert merge_patch(target, patch) == result


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=3),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=2), children, max_size=3),
    max_leaves=10)


@given(json_values, st.dictionaries(st.text(max_size=2), json_values, max_size=4))
def test_a_merge_patch_applied_twice_is_applied_once(target: Any, patch: Any) -> None:
    once = merge_patch(target, patch)
    assert merge_patch(once, patch) == once


# -- strategic merge patch -----------------------------------------------------------------


def test_kubectl_applys_label_patch_merges_maps() -> None:
    result = smp({"metadata": {"labels": {"tier": "front"}, "annotations": {"x": "1"}}})
    assert result["metadata"]["labels"] == {"app": "web", "tier": "front"}
    assert result["metadata"]["annotations"] == {"x": "1"}
    assert smp({"metadata": {"labels": {"app": None}}})["metadata"]["labels"] == {}


def test_lists_with_a_merge_key_merge_element_by_element() -> None:
    result = smp({"spec": {"volumes": [{"name": "cache", "emptyDir": {"medium": "Memory"}},
                                       {"name": "new", "hostPath": {"path": "/srv"}}]}})
    assert result["spec"]["volumes"] == [
        {"name": "scratch", "emptyDir": {}},
        {"name": "cache", "emptyDir": {"medium": "Memory"}},
        {"name": "new", "hostPath": {"path": "/srv"}}]
    containers = smp({"spec": {"containers": [
        {"name": "app", "image": "busybox:2", "env": [{"name": "B", "value": "2"}]}]}})
    app = containers["spec"]["containers"][0]
    assert app["image"] == "busybox:2"
    assert app["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    assert app["volumeMounts"] == POD["spec"]["containers"][0]["volumeMounts"]
    assert containers["spec"]["containers"][1] == {"name": "side", "image": "busybox"}


def test_lists_without_a_merge_key_are_replaced() -> None:
    assert smp({"spec": {"tolerations": [{"key": "j"}]}})["spec"]["tolerations"] == [
        {"key": "j"}]
    assert strategic_merge_patch({"a": [1, 2]}, {"a": [3]}, OBJECT_SCHEMA) == {"a": [3]}


def test_patch_directives() -> None:
    deleted = smp({"spec": {"volumes": [{"name": "cache", "$patch": "delete"}]}})
    assert [v["name"] for v in deleted["spec"]["volumes"]] == ["scratch"]
    replaced = smp({"spec": {"volumes": [{"$patch": "replace"}, {"name": "only"}]}})
    assert replaced["spec"]["volumes"] == [{"name": "only"}]
    whole = smp({"metadata": {"labels": {"$patch": "replace", "x": "y"}}})
    assert whole["metadata"]["labels"] == {"x": "y"}
    gone = smp({"metadata": {"labels": {"$patch": "delete"}}})
    assert gone["metadata"]["labels"] == {}
    retained = smp({"spec": {"volumes": [
        {"name": "scratch", "$retainKeys": ["hostPath", "name"], "hostPath": {"path": "/x"}}]}})
    assert retained["spec"]["volumes"][0] == {"name": "scratch", "hostPath": {"path": "/x"}}
    ordered = smp({"spec": {"$setElementOrder/volumes": [{"name": "cache"}, {"name": "scratch"}],
                            "volumes": [{"name": "cache", "emptyDir": {"medium": "Memory"}}]}})
    assert [v["name"] for v in ordered["spec"]["volumes"]] == ["cache", "scratch"]
    finalizers = smp({"metadata": {"finalizers": ["b"]}})
    assert finalizers["metadata"]["finalizers"] == ["a", "b"]
    removed = smp({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}})
    assert removed["metadata"]["finalizers"] == []


@pytest.mark.parametrize("patch, wording", [
    ({"spec": {"volumes": [{"emptyDir": {}}]}}, "does not contain declared merge key: name"),
    ({"spec": {"volumes": ["scratch"]}}, "must be objects"),
    ({"metadata": {"$patch": "explode"}}, "unknown patch type"),
    ({"metadata": {"$retainKeys": "name"}}, "$retainKeys must be a list"),
])
def test_a_strategic_patch_that_cannot_apply_says_why(patch: dict[str, Any],
                                                      wording: str) -> None:
    with pytest.raises(PatchError, match=wording.replace("$", r"\$")):
        smp(patch)


# -- RFC 6902 ------------------------------------------------------------------------------


def test_json_patch_operations() -> None:
    doc = {"a": {"b": [1, 2]}, "c": "x"}
    assert json_patch(doc, [{"op": "add", "path": "/a/b/0", "value": 0}]) == {
        "a": {"b": [0, 1, 2]}, "c": "x"}
    assert json_patch(doc, [{"op": "remove", "path": "/a/b/1"}])["a"]["b"] == [1]
    assert json_patch(doc, [{"op": "replace", "path": "/c", "value": "y"}])["c"] == "y"
    assert json_patch(doc, [{"op": "move", "from": "/c", "path": "/d"}]) == {
        "a": {"b": [1, 2]}, "d": "x"}
    assert json_patch(doc, [{"op": "copy", "from": "/a/b", "path": "/e"}])["e"] == [1, 2]
    assert json_patch(doc, [{"op": "test", "path": "/c", "value": "x"}]) == doc
    assert json_patch({"a/b": {"~": 1}}, [
        {"op": "replace", "path": "/a~1b/~0", "value": 2}]) == {"a/b": {"~": 2}}
    assert doc == {"a": {"b": [1, 2]}, "c": "x"}  # never modified in place


@pytest.mark.parametrize("operations, wording", [
    ({"op": "add"}, "must be a list"),
    ([{"op": "test", "path": "/c", "value": "y"}], "testing value /c failed"),
    ([{"op": "remove", "path": "/missing"}], "does not exist"),
    ([{"op": "add", "path": "/a/b/9", "value": 1}], "out of range"),
    ([{"op": "add", "path": "c", "value": 1}], "not a JSON pointer"),
    ([{"op": "frobnicate", "path": "/c"}], "unknown op"),
    ([{"op": "add", "path": "/c"}], "missing 'value'"),
    ([{"op": "move", "path": "/c"}], "missing 'from'"),
])
def test_a_json_patch_that_cannot_apply_says_why(operations: Any, wording: str) -> None:
    with pytest.raises(PatchError, match=wording):
        json_patch({"a": {"b": [1, 2]}, "c": "x"}, operations)


# -- what a pod update may change ----------------------------------------------------------


def test_a_pod_update_may_change_metadata_images_and_add_tolerations() -> None:
    new = copy.deepcopy(POD)
    new["metadata"]["labels"] = {"tier": "front"}
    new["metadata"]["annotations"] = {"note": "x"}
    new["spec"]["containers"][0]["image"] = "busybox:2"
    new["spec"]["tolerations"].append({"key": "j"})
    new["spec"]["activeDeadlineSeconds"] = 30
    assert pod_update_causes(POD, new) == []


@pytest.mark.parametrize("change, where", [
    (lambda s: s["volumes"][0].update(emptyDir={"medium": "Memory"}),
     "spec.volumes[0].emptyDir.medium"),
    (lambda s: s["volumes"].pop(), "spec.volumes[1]"),
    (lambda s: s["containers"][0]["volumeMounts"][0].update(mountPath="/x"),
     "spec.containers[0].volumeMounts[0].mountPath"),
    (lambda s: s["containers"].pop(), "spec.containers[1]"),
    (lambda s: s.update(tolerations=[]), "spec.tolerations[0]"),
    (lambda s: s.update(nodeName="n1"), "spec.nodeName"),
])
def test_any_other_spec_change_is_forbidden(change: Any, where: str) -> None:
    new = copy.deepcopy(POD)
    change(new["spec"])
    ((field, message),) = pod_update_causes(POD, new)
    assert field == "spec"
    assert message.startswith("Forbidden: pod updates may not change fields other than")
    assert message.endswith(f"(changed: {where})")


def test_a_pods_identity_is_immutable() -> None:
    old = copy.deepcopy(POD)
    old["metadata"]["uid"] = "u-1"
    new = copy.deepcopy(old)
    new["metadata"]["uid"] = "u-2"
    assert pod_update_causes(old, new) == [
        ("metadata.uid", 'Invalid value: "u-2": field is immutable')]
    del new["metadata"]["uid"]  # left out: kept from the stored pod
    assert pod_update_causes(old, new) == []
