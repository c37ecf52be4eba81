"""deploy/kubernetes, read as the kubelet and the API server would: the fields a CSI
driver's registration, mounts and permissions hang on, checked offline with PyYAML.

No cluster is needed, and none is faked: `kubectl apply --dry-run=client` still asks an
API server for its OpenAPI schema, so it is not run here."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import click
import pytest
import yaml

from volfs.cli.commands import serve
from volfs.persistent.nfs import ON_DELETE, SUBDIR_VARIABLES

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy" / "kubernetes"
DRIVER = "volfs.io"
NAMESPACE = "volfs"
KNOWN_KINDS = {"Namespace", "CSIDriver", "ServiceAccount", "ClusterRole",
               "ClusterRoleBinding", "Role", "RoleBinding", "DaemonSet", "Deployment",
               "StorageClass", "PersistentVolumeClaim", "Pod", "Kustomization"}
CLUSTER_SCOPED = {"Namespace", "CSIDriver", "ClusterRole", "ClusterRoleBinding",
                  "StorageClass"}
# What CreateVolume takes per kind (docs/csi.md); anything else in a class is a typo.
PARAMETERS = {"nfs": {"kind", "server", "share", "subDir", "onDelete", "mountOptions"},
              "scratch": {"kind", "medium"}}
Object = dict[str, Any]


def _yaml_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml"))


def _documents(path: Path) -> list[Object]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


@functools.cache
def _objects() -> list[Object]:
    """Every object the driver's and the examples' kustomizations install (read once:
    no test changes them)."""
    return [doc for directory in (DEPLOY, DEPLOY / "examples")
            for path in _yaml_files(directory) if path.name != "kustomization.yaml"
            for doc in _documents(path)]


def _one(kind: str, name: str | None = None) -> Object:
    found = [o for o in _objects() if o["kind"] == kind
             and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"{len(found)} {kind} objects named {name}"
    return found[0]


def _all(kind: str) -> list[Object]:
    return [o for o in _objects() if o["kind"] == kind]


def _container(workload: Object, name: str) -> Object:
    containers = workload["spec"]["template"]["spec"]["containers"]
    found = [c for c in containers if c["name"] == name]
    assert len(found) == 1, f"{workload['metadata']['name']} has no container {name}"
    return found[0]


def _arg(container: Object, flag: str) -> str:
    """The value of ``--flag=value`` in a container's args (one, exactly)."""
    values = [a.split("=", 1)[1] for a in container.get("args", [])
              if a.startswith(flag + "=")]
    assert len(values) == 1, f"{container['name']}: {flag} given {len(values)} times"
    return values[0]


def _host_path_of(workload: Object, container: Object, path: str) -> str:
    """The host path that ``path`` inside the container is, through its hostPath mounts
    (the deepest mount that holds the path)."""
    volumes = {v["name"]: v for v in workload["spec"]["template"]["spec"]["volumes"]}
    best: tuple[int, str] | None = None
    for mount in container.get("volumeMounts", []):
        inside = PurePosixPath(mount["mountPath"])
        wanted = PurePosixPath(path)
        if wanted == inside or inside in wanted.parents:
            host = volumes[mount["name"]]["hostPath"]["path"]
            rest = wanted.relative_to(inside)
            candidate = (len(inside.parts), str(PurePosixPath(host) / rest))
            best = candidate if best is None or candidate[0] > best[0] else best
    assert best is not None, f"{container['name']}: {path} is on no hostPath mount"
    return best[1]


def _mount(container: Object, mount_path: str) -> Object:
    found = [m for m in container.get("volumeMounts", []) if m["mountPath"] == mount_path]
    assert len(found) == 1, f"{container['name']} mounts nothing at {mount_path}"
    return found[0]


def _volume(workload: Object, name: str) -> Object:
    volumes = workload["spec"]["template"]["spec"]["volumes"]
    return next(v for v in volumes if v["name"] == name)


def _socket_path(endpoint: str) -> str:
    assert endpoint.startswith("unix://"), endpoint
    return endpoint.removeprefix("unix://")


def _workloads() -> list[Object]:
    return _all("DaemonSet") + _all("Deployment")


def _volfs() -> Object:
    return _container(_one("DaemonSet", "volfs-node"), "volfs")


def test_every_file_parses_into_objects_of_known_kinds_with_names() -> None:
    for directory in (DEPLOY, DEPLOY / "examples"):
        for path in _yaml_files(directory):
            for doc in _documents(path):
                assert doc.get("kind") in KNOWN_KINDS, (path.name, doc.get("kind"))
                assert "apiVersion" in doc, path.name
                if doc["kind"] != "Kustomization":
                    assert doc["metadata"]["name"], path.name


def test_each_kustomization_lists_every_file_beside_it_and_nothing_else() -> None:
    for directory in (DEPLOY, DEPLOY / "examples"):
        kustomization = _documents(directory / "kustomization.yaml")[0]
        listed = kustomization["resources"]
        assert len(listed) == len(set(listed))
        assert set(listed) == {p.name for p in _yaml_files(directory)
                               if p.name != "kustomization.yaml"}, directory


def test_the_driver_install_sets_no_image_tag_the_docs_do_not_name() -> None:
    # The volfs image is a placeholder the user points at their own build.
    images = _documents(DEPLOY / "kustomization.yaml")[0]["images"]
    assert [i["name"] for i in images] == ["volfs"]
    assert _volfs()["image"] == "volfs"
    docs = (REPO / "docs" / "csi.md").read_text()
    assert f"{images[0]['newName']}:{images[0]['newTag']}" in docs


def test_namespaced_objects_live_in_the_driver_namespace_which_is_installed() -> None:
    assert _one("Namespace", NAMESPACE)
    for path in _yaml_files(DEPLOY):
        for doc in _documents(path):
            if doc["kind"] not in CLUSTER_SCOPED | {"Kustomization"}:
                assert doc["metadata"].get("namespace") == NAMESPACE, (path.name, doc["kind"])


def test_the_csidriver_is_volfs_io_without_attach_and_with_pod_info() -> None:
    spec = _one("CSIDriver", DRIVER)["spec"]
    assert spec["attachRequired"] is False
    assert spec["podInfoOnMount"] is True
    assert spec["volumeLifecycleModes"] == ["Persistent"]
    assert spec["fsGroupPolicy"] in ("None", "File", "ReadWriteOnceWithFSType")


def test_the_registrar_registers_the_socket_volfs_serves_as_the_kubelet_sees_it() -> None:
    node = _one("DaemonSet", "volfs-node")
    volfs = _container(node, "volfs")
    registrar = _container(node, "node-driver-registrar")
    served = _socket_path(_arg(volfs, "--csi-endpoint"))
    on_host = _host_path_of(node, volfs, served)
    assert on_host == f"/var/lib/kubelet/plugins/{DRIVER}/csi.sock"
    assert _arg(registrar, "--kubelet-registration-path") == on_host
    # The registrar dials the same socket through its own mount of the directory.
    assert _host_path_of(node, registrar, _arg(registrar, "--csi-address")) == on_host


def test_the_registrar_reaches_the_kubelets_plugin_registry() -> None:
    node = _one("DaemonSet", "volfs-node")
    registrar = _container(node, "node-driver-registrar")
    # The registrar puts its registration socket in /registration, always.
    assert _host_path_of(node, registrar, "/registration") == \
        "/var/lib/kubelet/plugins_registry"


def test_volfs_can_mount_and_its_mounts_reach_the_host() -> None:
    node = _one("DaemonSet", "volfs-node")
    volfs = _volfs()
    assert volfs["securityContext"]["privileged"] is True
    assert _host_path_of(node, volfs, "/dev/fuse") == "/dev/fuse"
    # NodePublishVolume's bind onto the kubelet's target path, and volfs's own FUSE
    # mount that it binds from, must both propagate to the host.
    for path in ("/var/lib/kubelet", _arg(volfs, "--root")):
        assert _mount(volfs, path).get("mountPropagation") == "Bidirectional", path
        assert _host_path_of(node, volfs, path) == path


def test_volfs_keeps_its_state_on_the_host_across_restarts() -> None:
    node = _one("DaemonSet", "volfs-node")
    state = _arg(_volfs(), "--state-dir")
    assert _host_path_of(node, _volfs(), state) == "/var/lib/volfs-state"
    assert _volume(node, _mount(_volfs(), state)["name"])["hostPath"]["type"] == \
        "DirectoryOrCreate"


def test_the_node_id_is_the_kubernetes_node_name() -> None:
    volfs = _volfs()
    assert _arg(volfs, "--csi-node-id") == "$(NODE_NAME)"
    env = {e["name"]: e for e in volfs["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"


def test_every_variable_an_argument_uses_is_set_in_its_container() -> None:
    for workload in _workloads():
        for container in workload["spec"]["template"]["spec"]["containers"]:
            names = {e["name"] for e in container.get("env", [])}
            for arg in container.get("args", []):
                for variable in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", arg):
                    assert variable in names, (container["name"], arg)


def test_volfs_is_given_only_flags_serve_has() -> None:
    known = {opt for param in serve.params if isinstance(param, click.Option)
             for opt in param.opts}
    args = _volfs()["args"]
    assert args[0] == "serve"
    for arg in args[1:]:
        assert arg.split("=", 1)[0] in known, arg
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["/opt/volfs/bin/volfs"]' in dockerfile


def test_the_controller_sidecars_dial_the_node_plugins_socket_on_its_node() -> None:
    node = _one("DaemonSet", "volfs-node")
    controller = _one("Deployment", "volfs-controller")
    on_host = _host_path_of(node, _volfs(), _socket_path(_arg(_volfs(), "--csi-endpoint")))
    for name in ("csi-provisioner", "csi-resizer"):
        sidecar = _container(controller, name)
        assert _host_path_of(controller, sidecar, _arg(sidecar, "--csi-address")) == on_host
        assert "--leader-election" in sidecar["args"]
    # On a node that runs the node plugin, or the socket is not there.
    node_selector = node["spec"]["template"]["spec"]["nodeSelector"]
    assert controller["spec"]["template"]["spec"]["nodeSelector"] == node_selector
    assert controller["spec"]["replicas"] == 1


def _storage_node_labels() -> dict[str, str]:
    return dict(_one("DaemonSet", "volfs-node")["spec"]["template"]["spec"]["nodeSelector"])


def _allowed_on(storage_class: Object, labels: dict[str, str]) -> bool:
    """Whether a node with ``labels`` is one of the class's allowedTopologies (the
    scheduler's test for a claim that waits for its first consumer)."""
    terms = storage_class.get("allowedTopologies", [])
    return not terms or any(
        all(labels.get(e["key"]) in e["values"] for e in term["matchLabelExpressions"])
        for term in terms)


def _nfs_parameters_are_valid(parameters: dict[str, str]) -> None:
    assert parameters["server"] and parameters["share"].startswith("/")
    assert parameters.get("onDelete", "delete") in ON_DELETE
    for variable in re.findall(r"\$\{([^}]*)\}", parameters.get("subDir", "")):
        assert variable in SUBDIR_VARIABLES, variable


def test_every_storage_class_is_volfs_io_of_a_known_kind_and_expandable() -> None:
    classes = _all("StorageClass")
    assert {c["parameters"]["kind"] for c in classes} == set(PARAMETERS)
    for storage_class in classes:
        parameters = storage_class["parameters"]
        assert storage_class["provisioner"] == DRIVER
        assert set(parameters) <= PARAMETERS[parameters["kind"]], parameters
        assert storage_class["allowVolumeExpansion"] is True
        assert parameters.get("medium", "") in ("", "Memory")
        if parameters["kind"] == "nfs":
            _nfs_parameters_are_valid(parameters)
        # Volumes are made by the storage node's daemon: the scheduler must put a
        # claim's first pod there.
        assert storage_class["volumeBindingMode"] == "WaitForFirstConsumer"
        assert storage_class["allowedTopologies"]
        assert _allowed_on(storage_class, _storage_node_labels())
        assert not _allowed_on(storage_class, {"kubernetes.io/os": "linux"})


def test_the_example_pod_runs_where_its_claims_volume_is_served() -> None:
    pod = _one("Pod")
    claims = [v["persistentVolumeClaim"]["claimName"] for v in pod["spec"]["volumes"]]
    assert claims
    for claim_name in claims:
        claim = _one("PersistentVolumeClaim", claim_name)
        assert claim["metadata"]["namespace"] == pod["metadata"]["namespace"]
        storage_class = _one("StorageClass", claim["spec"]["storageClassName"])
        assert _allowed_on(storage_class, pod["spec"]["nodeSelector"])
    for key, value in _storage_node_labels().items():
        assert pod["spec"]["nodeSelector"].get(key, value) == value


def _rules_of(service_account: str) -> Iterator[Object]:
    """Every rule granted to a service account of the driver's namespace."""
    roles = {(r["kind"], r["metadata"]["name"]): r for r in _all("ClusterRole") + _all("Role")}
    for binding in _all("ClusterRoleBinding") + _all("RoleBinding"):
        if {"kind": "ServiceAccount", "name": service_account,
                "namespace": NAMESPACE} in binding["subjects"]:
            ref = binding["roleRef"]
            yield from roles[(ref["kind"], ref["name"])]["rules"]


def _granted(service_account: str, group: str, resource: str, verb: str) -> bool:
    return any(group in rule["apiGroups"] and resource in rule["resources"]
               and verb in rule["verbs"] for rule in _rules_of(service_account))


def test_every_binding_names_an_existing_account_and_role() -> None:
    accounts = {(a["metadata"]["namespace"], a["metadata"]["name"])
                for a in _all("ServiceAccount")}
    roles = {(r["kind"], r["metadata"]["name"]) for r in _all("ClusterRole") + _all("Role")}
    for binding in _all("ClusterRoleBinding") + _all("RoleBinding"):
        for subject in binding["subjects"]:
            assert (subject["namespace"], subject["name"]) in accounts, subject
        assert (binding["roleRef"]["kind"], binding["roleRef"]["name"]) in roles


def test_the_workloads_run_as_accounts_that_exist() -> None:
    accounts = {a["metadata"]["name"] for a in _all("ServiceAccount")}
    for workload in _workloads():
        assert workload["spec"]["template"]["spec"]["serviceAccountName"] in accounts


@pytest.mark.parametrize(("group", "resource", "verb"), [
    ("", "persistentvolumes", "create"), ("", "persistentvolumes", "delete"),
    ("", "persistentvolumeclaims", "update"), ("storage.k8s.io", "storageclasses", "watch"),
    ("", "events", "create"), ("storage.k8s.io", "csinodes", "get"), ("", "nodes", "get"),
    ("", "persistentvolumes", "patch"), ("", "persistentvolumeclaims/status", "patch"),
    ("", "pods", "watch"), ("coordination.k8s.io", "leases", "update"),
])
def test_the_controllers_account_may_do_what_the_sidecars_do(
        group: str, resource: str, verb: str) -> None:
    account = _one("Deployment", "volfs-controller")["spec"]["template"]["spec"][
        "serviceAccountName"]
    assert _granted(account, group, resource, verb)


def test_the_node_plugins_account_needs_and_gets_no_api_access() -> None:
    node = _one("DaemonSet", "volfs-node")["spec"]["template"]["spec"]
    assert list(_rules_of(node["serviceAccountName"])) == []
    account = _one("ServiceAccount", node["serviceAccountName"])
    assert account["automountServiceAccountToken"] is False
