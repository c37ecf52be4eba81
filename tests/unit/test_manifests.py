"""Manifests parsed and validated into Pods, and the one-line errors users see."""

from __future__ import annotations

import copy
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from volfs.api import (
    EmptyDirVolumeSource,
    HostPathVolumeSource,
    ManifestError,
    PersistentVolumeClaimVolumeSource,
    Pod,
    VolumeMount,
    load_manifests,
    parse_object,
)
from volfs.api.manifests import MAX_DEPTH, TooDeep, check_depth, decode_json, decode_yaml
from volfs.api.validation import build_pod
from volfs.api.workloads import Workload, template_pod

MINIMAL = """\
apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  containers:
    - name: web
      image: nginx
"""


def pod_doc(**spec: Any) -> dict[str, Any]:
    """A valid pod with one container mounting volume ``data`` (an emptyDir) at /data."""
    doc: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web"},
        "spec": {
            "containers": [
                {"name": "web", "volumeMounts": [{"name": "data", "mountPath": "/data"}]}
            ],
            "volumes": [{"name": "data", "emptyDir": {}}],
        },
    }
    doc["spec"].update(spec)
    return doc


def only_pod(objects: Sequence[object]) -> Pod:
    """The one object a manifest gave, checked to be a Pod."""
    [pod] = objects
    assert isinstance(pod, Pod)
    return pod


def legacy_pod(objects: Sequence[object]) -> Pod:
    """The first replica of the one controller a legacy manifest gave (the v1 controller
    it is translated into)."""
    [controller] = objects
    assert isinstance(controller, Workload) and controller.kind == "ReplicationController"
    return build_pod(template_pod(controller.to_k8s(), f"{controller.name}-0"), None)


def error_of(doc: Any, source: str | None = "pod.yaml") -> ManifestError:
    with pytest.raises(ManifestError) as info:
        parse_object(doc, source)
    return info.value


def load_error(text: str, source: str = "pod.yaml") -> str:
    with pytest.raises(ManifestError) as info:
        load_manifests(text, source)
    return str(info.value)


# -- the manifests users bring ---------------------------------------------------------


def test_pod_with_a_claim_parses(examples_dir: Path) -> None:
    text = (examples_dir / "pod-web-pvc.yaml").read_text()
    pod = only_pod(load_manifests(text, "pod-web-pvc.yaml"))
    assert (pod.metadata.name, pod.metadata.namespace) == ("web-frontend", "default")
    assert pod.metadata.labels == {"role": "web-frontend"}
    [volume] = pod.spec.volumes
    assert volume.source_kind() == "persistentVolumeClaim"
    assert volume.source == PersistentVolumeClaimVolumeSource(claim_name="nfs")
    [mount] = pod.spec.containers[0].volume_mounts
    assert mount == VolumeMount(name="nfs", mount_path="/usr/share/nginx/html")
    assert pod.spec.containers[0].ports == [{"name": "web", "containerPort": 80}]


def test_legacy_controller_gives_one_pod_sharing_an_empty_dir(examples_dir: Path) -> None:
    text = (examples_dir / "legacy-rc-emptydir.yaml").read_text()
    [controller] = load_manifests(text, "legacy-rc-emptydir.yaml")
    assert isinstance(controller, Workload)
    doc = controller.to_k8s()
    assert (doc["apiVersion"], doc["kind"], doc["metadata"]["name"]) == (
        "v1", "ReplicationController", "share-apache2-controller")
    assert doc["spec"]["replicas"] == 1
    assert doc["spec"]["selector"] == {"name": "share-apache2"}
    pod = legacy_pod([controller])
    assert pod.metadata.name == "share-apache2-controller-0"
    assert pod.metadata.labels == {"name": "share-apache2"}
    assert [c.name for c in pod.spec.containers] == ["share-apache2-1", "share-apache2-2"]
    assert [c.image for c in pod.spec.containers] == [
        "docker-registry.sh/myapp",
        "docker-registry.sh/apache2",
    ]
    assert [c.ports for c in pod.spec.containers] == [
        [{"containerPort": 8080}],
        [{"containerPort": 80}],
    ]
    [volume] = pod.spec.volumes
    assert (volume.name, volume.source_kind()) == ("data", "emptyDir")
    for container in pod.spec.containers:
        assert container.volume_mounts == [VolumeMount(name="data", mount_path="/data")]


@pytest.mark.parametrize(
    ("name", "kind"),
    [("pv-nfs.yaml", "PersistentVolume"), ("pvc-nfs.yaml", "PersistentVolumeClaim")],
)
def test_example_persistent_volume_manifests_parse(examples_dir: Path, name: str,
                                                  kind: str) -> None:
    [obj] = load_manifests((examples_dir / name).read_text(), name)
    assert obj.kind == kind and obj.metadata.name == "nfs"
    assert parse_object(obj.to_k8s()) == [obj]


def test_storage_class_needs_a_provisioner() -> None:
    doc = {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "s"}}
    assert str(error_of(doc)) == "pod.yaml: provisioner: Required value"


def test_a_volume_has_exactly_one_source() -> None:
    spec: dict[str, Any] = {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"]}
    pv = {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "v"}, "spec": spec}
    assert str(error_of(pv)).startswith("pod.yaml: spec: Required value: a volume source (nfs,")
    spec.update(nfs={"server": "s", "path": "/p"}, local={"path": "/d"})
    assert str(error_of(pv)) == ("pod.yaml: spec.local: Forbidden: may not specify more than "
                                 "1 volume type")


@pytest.mark.parametrize("name", ["pod-web-pvc.yaml", "legacy-rc-emptydir.yaml"])
def test_example_pods_round_trip(examples_dir: Path, name: str) -> None:
    [obj] = load_manifests((examples_dir / name).read_text(), name)
    assert parse_object(obj.to_k8s()) == [obj]


# -- what a Pod keeps ------------------------------------------------------------------

KITCHEN_SINK = """\
apiVersion: v1
kind: Pod
metadata:
  name: full.example
  namespace: team-a
  uid: 0b6c4e9e-7d6a-4b8e-9d7e-3f0a2c1b5e11
  resourceVersion: "42"
  generation: 1
  creationTimestamp: 2024-05-01T10:00:00Z
  labels: {app: full}
  annotations: {note: "kept"}
  ownerReferences: [{apiVersion: v1, kind: Thing, name: t, uid: u}]
  finalizers: [example.com/keep]
spec:
  restartPolicy: Always
  terminationGracePeriodSeconds: 30
  dnsPolicy: ClusterFirst
  nodeSelector: {disk: ssd}
  serviceAccountName: default
  hostPID: false
  hostIPC: false
  hostNetwork: false
  setHostnameAsFQDN: false
  securityContext: {runAsUser: 1000, fsGroup: 2000}
  tolerations: [{key: k, operator: Exists, effect: NoSchedule}]
  affinity: {nodeAffinity: {}}
  imagePullSecrets: [{name: regcred}]
  topologySpreadConstraints: []
  os: {name: linux}
  initContainers:
    - name: init
      image: busybox
      command: [sh, -c, "echo hi > /work/hi"]
      volumeMounts: [{name: scratch, mountPath: /work}]
  containers:
    - name: app
      image: example/app:1
      args: [--serve]
      workingDir: /srv
      ports: [{containerPort: 8080, protocol: TCP}]
      env: [{name: MODE, value: prod}]
      envFrom: [{configMapRef: {name: cfg}}]
      resources: {limits: {memory: 64Mi}, requests: {cpu: 100m}}
      livenessProbe: {httpGet: {path: /healthz, port: 8080}}
      readinessProbe: {tcpSocket: {port: 8080}}
      startupProbe: {exec: {command: [true]}}
      lifecycle: {preStop: {exec: {command: [sleep, "1"]}}}
      securityContext: {readOnlyRootFilesystem: true}
      imagePullPolicy: IfNotPresent
      terminationMessagePolicy: File
      stdin: false
      tty: false
      volumeMounts:
        - {name: scratch, mountPath: /scratch, subPath: app, mountPropagation: None}
        - {name: cache, mountPath: /cache, readOnly: true}
        - {name: host, mountPath: /host}
        - {name: share, mountPath: /share}
        - {name: cfg, mountPath: /etc/cfg}
        - {name: creds, mountPath: /etc/creds}
  volumes:
    - name: scratch
      emptyDir: {}
    - name: cache
      emptyDir: {medium: Memory, sizeLimit: 64Mi}
    - name: host
      hostPath: {path: /var/log, type: Directory}
    - name: share
      nfs: {server: 127.0.0.1, path: /exports, readOnly: true}
    - name: cfg
      configMap: {name: cfg, items: [{key: a, path: a.conf}]}
    - name: creds
      csi: {driver: secrets.example.com, volumeAttributes: {x: "y"}}
status:
  phase: Running
"""


@pytest.fixture
def full_pod() -> Pod:
    pod = only_pod(load_manifests(KITCHEN_SINK, "full.yaml"))
    return pod


def test_real_kubernetes_fields_are_accepted_and_kept(full_pod: Pod) -> None:
    out = full_pod.to_k8s()
    assert out["spec"]["hostPID"] is False
    assert out["spec"]["tolerations"] == [
        {"key": "k", "operator": "Exists", "effect": "NoSchedule"}
    ]
    app = out["spec"]["containers"][0]
    assert app["resources"] == {"limits": {"memory": "64Mi"}, "requests": {"cpu": "100m"}}
    assert app["envFrom"] == [{"configMapRef": {"name": "cfg"}}]
    assert app["volumeMounts"][0]["mountPropagation"] == "None"
    assert out["metadata"]["finalizers"] == ["example.com/keep"]


def test_volume_sources_are_typed_or_raw(full_pod: Pod) -> None:
    kinds = [(v.name, v.source_kind()) for v in full_pod.spec.volumes]
    assert kinds == [
        ("scratch", "emptyDir"),
        ("cache", "emptyDir"),
        ("host", "hostPath"),
        ("share", "nfs"),
        ("cfg", "configMap"),
        ("creds", "csi"),
    ]
    cache, host = full_pod.spec.volumes[1], full_pod.spec.volumes[2]
    assert cache.source == EmptyDirVolumeSource(medium="Memory", size_limit="64Mi")
    assert host.source == HostPathVolumeSource(path="/var/log", type="Directory")
    assert full_pod.spec.volumes[3].nfs is not None
    assert full_pod.spec.volumes[3].nfs.read_only is True
    assert full_pod.spec.volumes[4].source == {
        "name": "cfg",
        "items": [{"key": "a", "path": "a.conf"}],
    }


def test_size_limit_in_bytes(full_pod: Pod) -> None:
    assert full_pod.spec.volumes[1].empty_dir is not None
    assert full_pod.spec.volumes[1].empty_dir.size_limit_bytes() == 64 * 2**20
    assert EmptyDirVolumeSource().size_limit_bytes() is None
    assert EmptyDirVolumeSource(size_limit=1000).size_limit_bytes() == 1000


def test_metadata_is_kept_and_status_dropped(full_pod: Pod) -> None:
    meta = full_pod.metadata
    assert (meta.namespace, meta.uid, meta.resource_version) == (
        "team-a",
        "0b6c4e9e-7d6a-4b8e-9d7e-3f0a2c1b5e11",
        "42",
    )
    assert meta.creation_timestamp == "2024-05-01T10:00:00Z"
    assert full_pod.status is None
    assert "status" not in full_pod.to_k8s()


def test_to_k8s_is_camel_case_json_without_nulls(full_pod: Pod) -> None:
    out = full_pod.to_k8s()
    assert (out["apiVersion"], out["kind"]) == ("v1", "Pod")
    assert out["spec"]["volumes"][1] == {
        "name": "cache",
        "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"},
    }
    assert out["spec"]["initContainers"][0]["volumeMounts"][0]["mountPath"] == "/work"
    assert "args" not in out["spec"]["initContainers"][0]


def test_full_pod_round_trips(full_pod: Pod) -> None:
    assert parse_object(full_pod.to_k8s()) == [full_pod]
    assert yaml.safe_load(yaml.safe_dump(full_pod.to_k8s())) == full_pod.to_k8s()


def test_nulls_mean_unset() -> None:
    doc = pod_doc()
    doc["metadata"].update(namespace=None, labels=None)
    doc["spec"]["volumes"] = [{"name": "data", "emptyDir": None}]
    doc["spec"]["containers"][0]["volumeMounts"][0]["readOnly"] = None
    pod = only_pod(parse_object(doc))
    assert (pod.metadata.namespace, pod.metadata.labels) == ("default", {})
    assert pod.spec.volumes[0].source_kind() == "emptyDir"
    assert pod.spec.containers[0].volume_mounts[0].read_only is False


def test_volume_without_source_is_an_empty_dir() -> None:
    pod = only_pod(parse_object(pod_doc(volumes=[{"name": "data"}])))
    assert pod.spec.volumes[0].source == EmptyDirVolumeSource()
    assert pod.to_k8s()["spec"]["volumes"] == [{"name": "data", "emptyDir": {"medium": ""}}]


# -- unknown fields ----------------------------------------------------------------------


def _at(doc: dict[str, Any], path: list[str | int]) -> dict[str, Any]:
    node: Any = doc
    for part in path:
        node = node[part]
    return node  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("where", "key", "field"),
    [
        ([], "specs", "specs"),
        (["metadata"], "nam", "metadata.nam"),
        (["spec"], "volume", "spec.volume"),
        (["spec", "containers", 0], "volumeMount", "spec.containers[0].volumeMount"),
        (
            ["spec", "containers", 0, "volumeMounts", 0],
            "readonly",
            "spec.containers[0].volumeMounts[0].readonly",
        ),
        (
            ["spec", "containers", 0, "volumeMounts", 0],
            "mount_path",
            "spec.containers[0].volumeMounts[0].mount_path",
        ),
        (["spec", "volumes", 0], "emptydir", "spec.volumes[0].emptydir"),
        (["spec", "volumes", 0, "emptyDir"], "size", "spec.volumes[0].emptyDir.size"),
    ],
)
def test_unknown_fields_are_rejected(where: list[str | int], key: str, field: str) -> None:
    doc = pod_doc()
    _at(doc, where)[key] = {}
    assert str(error_of(doc)) == f'pod.yaml: {field}: unknown field "{key}"'


@pytest.mark.parametrize(
    ("volume", "field"),
    [
        ({"hostPath": {"path": "/x", "kind": "File"}}, "hostPath.kind"),
        ({"nfs": {"server": "s", "path": "/", "share": "x"}}, "nfs.share"),
        (
            {"persistentVolumeClaim": {"claimName": "c", "claim": "c"}},
            "persistentVolumeClaim.claim",
        ),
    ],
)
def test_unknown_fields_in_typed_sources_are_rejected(volume: dict[str, Any], field: str) -> None:
    doc = pod_doc(volumes=[{"name": "data", **volume}])
    key = field.rsplit(".", 1)[1]
    assert str(error_of(doc)) == f'pod.yaml: spec.volumes[0].{field}: unknown field "{key}"'


def test_null_unknown_field_is_still_unknown() -> None:
    doc = pod_doc()
    doc["spec"]["containers"][0]["volumeMount"] = None
    assert error_of(doc).causes == [
        ("spec.containers[0].volumeMount", 'unknown field "volumeMount"')
    ]


# -- wrong types --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "key", "value", "message"),
    [
        (
            ["spec", "containers", 0, "volumeMounts", 0],
            "readOnly",
            "yes",
            '"yes": must be a boolean',
        ),
        (["spec", "containers", 0], "name", 5, "5: must be a string"),
        (["spec"], "containers", "web", '"web": must be a list'),
        (["spec", "volumes", 0], "emptyDir", 5, "5: must be a mapping"),
        (["metadata"], "labels", ["a"], '["a"]: must be a mapping'),
        (["spec"], "terminationGracePeriodSeconds", "30", '"30": must be an integer'),
    ],
)
def test_wrong_types_are_rejected(
    where: list[str | int], key: str, value: object, message: str
) -> None:
    doc = pod_doc()
    _at(doc, where)[key] = value
    err = error_of(doc)
    field = ".".join(str(p) for p in [*where, key]).replace(".0", "[0]")
    assert str(err) == f"pod.yaml: {field}: Invalid value: {message}"


def test_label_values_must_be_strings() -> None:
    pod = only_pod(load_manifests(MINIMAL + "  # labels\n", "pod.yaml"))
    assert pod.metadata.labels == {}
    text = MINIMAL.replace("  name: web\n", "  name: web\n  labels: {version: 1}\n", 1)
    assert (
        load_error(text) == "pod.yaml: metadata.labels.version: Invalid value: 1: must be a string"
    )


# -- validation ---------------------------------------------------------------------------


def _with_mount(**mount: Any) -> dict[str, Any]:
    return pod_doc(containers=[{"name": "web", "volumeMounts": [{"name": "data", **mount}]}])


@pytest.mark.parametrize(
    ("doc", "line"),
    [
        (
            pod_doc(volumes=[{"name": "data"}, {"name": "data", "emptyDir": {}}]),
            'spec.volumes[1].name: Duplicate value: "data"',
        ),
        (
            _with_mount(name="foo", mountPath="/x"),
            'spec.containers[0].volumeMounts[0].name: Not found: "foo"',
        ),
        (
            pod_doc(volumes=[{"name": "data", "emptyDir": {}, "hostPath": {"path": "/x"}}]),
            "spec.volumes[0]: must specify exactly one volume source",
        ),
        (
            pod_doc(volumes=[{"name": "data", "emptyDir": {}, "configMap": {"name": "c"}}]),
            "spec.volumes[0]: must specify exactly one volume source",
        ),
        (
            pod_doc(volumes=[{"name": "data", "emptyDir": {"sizeLimit": "lots"}}]),
            'spec.volumes[0].emptyDir.sizeLimit: "lots" is not a quantity',
        ),
        (
            pod_doc(volumes=[{"name": "data", "emptyDir": {"sizeLimit": "-1Gi"}}]),
            'spec.volumes[0].emptyDir.sizeLimit: "-1Gi" must not be negative',
        ),
        (
            pod_doc(volumes=[{"name": "data", "emptyDir": {"medium": "HugePages"}}]),
            'spec.volumes[0].emptyDir.medium: Unsupported value: "HugePages": '
            'supported values: "", "Memory"',
        ),
        (
            pod_doc(volumes=[{"name": "data", "hostPath": {"path": "/srv/../etc"}}]),
            'spec.volumes[0].hostPath.path: Invalid value: "/srv/../etc": must not contain \'..\'',
        ),
        (
            pod_doc(volumes=[{"name": "data", "hostPath": {"path": "srv/data"}}]),
            'spec.volumes[0].hostPath.path: Invalid value: "srv/data": must be an absolute path',
        ),
        (
            pod_doc(volumes=[{"name": "data", "hostPath": {}}]),
            "spec.volumes[0].hostPath.path: Required value",
        ),
        (
            pod_doc(volumes=[{"name": "data", "hostPath": {"path": "/x", "type": "Dir"}}]),
            'spec.volumes[0].hostPath.type: Unsupported value: "Dir": supported values: "", '
            '"DirectoryOrCreate", "Directory", "FileOrCreate", "File", "Socket", '
            '"CharDevice", "BlockDevice"',
        ),
        (
            pod_doc(volumes=[{"name": "data", "nfs": {"server": "s", "path": "exports"}}]),
            'spec.volumes[0].nfs.path: Invalid value: "exports": must be an absolute path',
        ),
        (
            pod_doc(volumes=[{"name": "data", "nfs": {"path": "/"}}]),
            "spec.volumes[0].nfs.server: Required value",
        ),
        (
            pod_doc(volumes=[{"name": "data", "persistentVolumeClaim": {}}]),
            "spec.volumes[0].persistentVolumeClaim.claimName: Required value",
        ),
        (
            _with_mount(mountPath="/x", subPath="../up"),
            'spec.containers[0].volumeMounts[0].subPath: Invalid value: "../up": must not '
            "contain '..'",
        ),
        (
            _with_mount(mountPath="/x", subPath="/abs"),
            'spec.containers[0].volumeMounts[0].subPath: Invalid value: "/abs": must be a '
            "relative path",
        ),
        (
            _with_mount(mountPath="/x", subPathExpr="$(POD)"),
            "spec.containers[0].volumeMounts[0].subPathExpr: "
            "Forbidden: volfs does not expand subPathExpr; use subPath",
        ),
        (_with_mount(), "spec.containers[0].volumeMounts[0].mountPath: Required value"),
        (pod_doc(containers=[]), "spec.containers: Required value"),
        (
            pod_doc(containers=[{"name": "web"}, {"name": "web"}]),
            'spec.containers[1].name: Duplicate value: "web"',
        ),
        (
            pod_doc(containers=[{"name": "Web"}]),
            'spec.containers[0].name: Invalid value: "Web": a lowercase RFC 1123 label must '
            "consist of lower case alphanumeric characters or '-', and must start and end "
            "with an alphanumeric character",
        ),
        (
            pod_doc(volumes=[{"name": "my.data"}]),
            'spec.volumes[0].name: Invalid value: "my.data": a lowercase RFC 1123 label must '
            "consist of lower case alphanumeric characters or '-', and must start and end "
            "with an alphanumeric character",
        ),
        (pod_doc(volumes=[{"emptyDir": {}}]), "spec.volumes[0].name: Required value"),
    ],
)
def test_invalid_pods_say_what_and_where(doc: dict[str, Any], line: str) -> None:
    assert str(error_of(doc)) == f"pod.yaml: {line}"


@pytest.mark.parametrize(
    ("name", "line"),
    [
        (None, "metadata.name: Required value"),
        ("", "metadata.name: Required value"),
        (
            "../etc",
            'metadata.name: Invalid value: "../etc": a lowercase RFC 1123 subdomain must '
            "consist of lower case alphanumeric characters, '-' or '.', and must start and "
            "end with an alphanumeric character",
        ),
        (
            "a" * 254,
            f'metadata.name: Invalid value: "{"a" * 80}...": must be no more than 253 characters',
        ),
    ],
)
def test_pod_names_are_dns_subdomains(name: str | None, line: str) -> None:
    doc = pod_doc()
    doc["metadata"]["name"] = name
    assert str(error_of(doc)) == f"pod.yaml: {line}"


@pytest.mark.parametrize("name", ["a", "web-1", "web.example.com", "a" * 253, "0"])
def test_valid_pod_names(name: str) -> None:
    doc = pod_doc()
    doc["metadata"]["name"] = name
    assert parse_object(doc)[0].metadata.name == name


def test_generate_name_alone_is_not_enough() -> None:
    doc = pod_doc()
    doc["metadata"] = {"generateName": "web-"}
    assert (
        str(error_of(doc))
        == "pod.yaml: metadata.name: Required value: volfs does not generate names"
    )


def test_namespace_is_a_dns_label() -> None:
    doc = pod_doc()
    doc["metadata"]["namespace"] = "a" * 64
    assert error_of(doc).causes == [
        ("metadata.namespace", f'Invalid value: "{"a" * 64}": must be no more than 63 characters')
    ]


def test_mount_paths_are_unique_per_container() -> None:
    doc = pod_doc()
    doc["spec"]["containers"][0]["volumeMounts"].append({"name": "data", "mountPath": "/data"})
    assert str(error_of(doc)) == (
        'pod.yaml: spec.containers[0].volumeMounts[1].mountPath: Invalid value: "/data": '
        "must be unique"
    )


def test_init_containers_are_validated_like_containers() -> None:
    doc = pod_doc(
        initContainers=[{"name": "web", "volumeMounts": [{"name": "x", "mountPath": "/x"}]}]
    )
    assert error_of(doc).causes == [
        ("spec.initContainers[0].volumeMounts[0].name", 'Not found: "x"'),
        ("spec.containers[0].name", 'Duplicate value: "web"'),
    ]


def test_every_cause_is_collected() -> None:
    doc = pod_doc(
        volumes=[
            {"name": "data", "hostPath": {"path": "/a/../b"}},
            {"name": "data", "emptyDir": {}},
        ]
    )
    doc["spec"]["containers"][0]["volumeMounts"].append({"name": "nope"})
    assert error_of(doc).causes == [
        ("spec.volumes[0].hostPath.path", 'Invalid value: "/a/../b": must not contain \'..\''),
        ("spec.volumes[1].name", 'Duplicate value: "data"'),
        ("spec.containers[0].volumeMounts[1].name", 'Not found: "nope"'),
        ("spec.containers[0].volumeMounts[1].mountPath", "Required value"),
    ]


def test_decoding_causes_follow_the_document() -> None:
    doc = pod_doc(volumes=[{"name": "data", "emptyDir": {"bogus": 1, "sizeLimit": "lots"}}])
    doc["spec"]["containers"][0]["volumeMount"] = []
    assert error_of(doc).causes == [
        ("spec.containers[0].volumeMount", 'unknown field "volumeMount"'),
        ("spec.volumes[0].emptyDir.bogus", 'unknown field "bogus"'),
        ("spec.volumes[0].emptyDir.sizeLimit", '"lots" is not a quantity'),
    ]


# -- documents, kinds and YAML ------------------------------------------------------------


def test_malformed_yaml_names_line_and_column() -> None:
    text = "apiVersion: v1\nkind: Pod\nmetadata: x\n    name: web\n"
    assert load_error(text) == "pod.yaml: line 4, column 9: mapping values are not allowed here"


def test_yaml_error_gives_its_context() -> None:
    text = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n - x\n"
    assert load_error(text) == (
        "pod.yaml: line 5, column 2: expected <block end>, but found '<block sequence start>' "
        "(while parsing a block mapping at line 1, column 1)"
    )


def test_duplicate_keys_are_refused() -> None:
    text = MINIMAL + "  containers: []\n"
    assert (
        load_error(text)
        == 'pod.yaml: line 9, column 3: mapping key "containers" already defined at line 6'
    )


def test_yaml_merge_keys_still_work() -> None:
    text = MINIMAL.replace("  name: web\n", "  <<: {name: base, namespace: ns}\n  name: web\n", 1)
    pod = only_pod(load_manifests(text, "pod.yaml"))
    assert (pod.metadata.name, pod.metadata.namespace) == ("web", "ns")


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("- a\n- b\n", "pod.yaml: must be a mapping (a Kubernetes object), not a list"),
        ("just text\n", "pod.yaml: must be a mapping (a Kubernetes object), not a string"),
        ("kind: Pod\n", "pod.yaml: apiVersion: Required value"),
        ("apiVersion: v1\n", "pod.yaml: kind: Required value"),
        ("apiVersion: 1\nkind: Pod\n", "pod.yaml: apiVersion: Invalid value: 1: must be a string"),
        ("apiVersion: v1\nkind: Foo\n", 'pod.yaml: kind: unknown kind "Foo" for apiVersion "v1"'),
        (
            "apiVersion: apps/v1\nkind: Deployment\n",
            'pod.yaml: kind: unknown kind "Deployment" for apiVersion "apps/v1"',
        ),
        (
            "apiVersion: v2\nkind: Pod\n",
            'pod.yaml: apiVersion: unknown apiVersion "v2" for kind "Pod"',
        ),
    ],
)
def test_documents_that_are_not_known_objects(text: str, line: str) -> None:
    assert load_error(text) == line


def test_several_documents_name_the_one_at_fault() -> None:
    text = f"---\n{MINIMAL}---\napiVersion: v1\nkind: Foo\n"
    assert load_error(text, "pods.yaml") == (
        'pods.yaml (document 2): kind: unknown kind "Foo" for apiVersion "v1"'
    )


def test_several_documents_give_several_pods_and_skip_empty_ones() -> None:
    second = MINIMAL.replace("name: web\nspec", "name: api\nspec")
    pods = load_manifests(f"{MINIMAL}---\n# nothing here\n---\n{second}---\n", "pods.yaml")
    assert [p.metadata.name for p in pods] == ["web", "api"]


def test_empty_stream_gives_no_pods() -> None:
    assert load_manifests("", "empty.yaml") == []
    assert load_manifests("# only a comment\n---\n", "empty.yaml") == []


def test_one_document_errors_name_only_the_file() -> None:
    assert load_error(MINIMAL.replace("name: web\n", "name: Web\n", 1)).startswith(
        'pod.yaml: metadata.name: Invalid value: "Web"'
    )


def test_list_kind_gives_its_items() -> None:
    second = pod_doc()
    second["metadata"]["name"] = "api"
    doc: dict[str, Any] = {"apiVersion": "v1", "kind": "List", "items": [pod_doc(), second]}
    assert [p.metadata.name for p in parse_object(doc)] == ["web", "api"]
    doc["items"][1]["spec"]["containers"] = []
    assert str(error_of(doc)) == "pod.yaml: items[1].spec.containers: Required value"
    doc["items"][1] = 5
    assert (
        str(error_of(doc))
        == "pod.yaml: items[1]: must be a mapping (a Kubernetes object), not a number"
    )


# -- ManifestError ------------------------------------------------------------------------


def test_error_without_source_has_no_prefix() -> None:
    assert str(error_of(pod_doc(containers=[]), None)) == "spec.containers: Required value"
    assert str(error_of([], None)) == "must be a mapping (a Kubernetes object), not a list"


def test_manifest_error_shape() -> None:
    err = ManifestError("pods.yaml (document 2)", [("a.b", "first"), ("", "second")])
    assert isinstance(err, ValueError)
    assert str(err) == "pods.yaml (document 2): a.b: first"
    assert err.lines() == ["pods.yaml (document 2): a.b: first", "pods.yaml (document 2): second"]
    assert ManifestError(None, [("", "whole")]).lines() == ["whole"]
    copied = pickle.loads(pickle.dumps(err))
    assert (copied.source, copied.causes, str(copied)) == (err.source, err.causes, str(err))


# -- legacy v1beta1 -------------------------------------------------------------------------

MANIFEST = "desiredState.podTemplate.desiredState.manifest"


@pytest.fixture
def legacy(examples_dir: Path) -> dict[str, Any]:
    doc = yaml.safe_load((examples_dir / "legacy-rc-emptydir.yaml").read_text())
    assert isinstance(doc, dict)
    return doc


def _manifest(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["desiredState"]["podTemplate"]["desiredState"]["manifest"]  # type: ignore[no-any-return]


def test_legacy_replicas_become_the_controllers_replicas(legacy: dict[str, Any]) -> None:
    legacy["desiredState"]["replicas"] = 3
    [controller] = parse_object(legacy)
    assert isinstance(controller, Workload)
    assert controller.to_k8s()["spec"]["replicas"] == 3


def test_legacy_zero_replicas_still_checks_the_template(legacy: dict[str, Any]) -> None:
    legacy["desiredState"]["replicas"] = 0
    [controller] = parse_object(legacy)
    assert isinstance(controller, Workload)
    assert controller.to_k8s()["spec"]["replicas"] == 0
    _manifest(legacy)["containers"] = []
    assert str(error_of(legacy)) == f"pod.yaml: {MANIFEST}.containers: Required value"


def test_legacy_host_dir_becomes_host_path(legacy: dict[str, Any]) -> None:
    _manifest(legacy)["volumes"][0]["source"] = {"hostDir": {"path": "/srv/data"}}
    pod = legacy_pod(parse_object(legacy))
    assert pod.spec.volumes[0].source == HostPathVolumeSource(path="/srv/data")


def test_legacy_container_fields_are_translated(legacy: dict[str, Any]) -> None:
    container = _manifest(legacy)["containers"][0]
    container.update(
        command=["httpd"],
        env=[{"name": "A", "value": "1"}],
        workingDir="/srv",
        memory=134217728,
        cpu=100,
    )
    container["volumeMounts"][0] = {"name": "data", "path": "/data", "readOnly": True}
    pod = legacy_pod(parse_object(legacy))
    first = pod.spec.containers[0]
    assert (first.command, first.env, first.working_dir) == (
        ["httpd"],
        [{"name": "A", "value": "1"}],
        "/srv",
    )
    assert first.resources == {"limits": {"memory": 134217728, "cpu": "100m"}}
    assert first.volume_mounts == [VolumeMount(name="data", mount_path="/data", read_only=True)]


@pytest.mark.parametrize(
    ("change", "line"),
    [
        (
            lambda d: _manifest(d)["volumes"][0]["source"].update(emptyDir={"sizeLimit": "lots"}),
            f'{MANIFEST}.volumes[0].source.emptyDir.sizeLimit: "lots" is not a quantity',
        ),
        (
            lambda d: _manifest(d)["volumes"][0].update(source={"hostDir": {"path": "/a/../b"}}),
            f'{MANIFEST}.volumes[0].source.hostDir.path: Invalid value: "/a/../b": must not '
            "contain '..'",
        ),
        (
            lambda d: _manifest(d)["containers"][1]["volumeMounts"][0].update(name="nope"),
            f'{MANIFEST}.containers[1].volumeMounts[0].name: Not found: "nope"',
        ),
        (
            lambda d: _manifest(d)["containers"][0].update(volumeMount=[]),
            f'{MANIFEST}.containers[0].volumeMount: unknown field "volumeMount"',
        ),
        (
            lambda d: _manifest(d)["volumes"][0].update(source="emptyDir"),
            f'{MANIFEST}.volumes[0].source: Invalid value: "emptyDir": must be a mapping',
        ),
        (
            lambda d: d["desiredState"]["podTemplate"].update(labels={"name": 1}),
            "desiredState.podTemplate.labels.name: Invalid value: 1: must be a string",
        ),
        (lambda d: d.pop("id"), "id: Required value"),
        (
            lambda d: d.update(id="Share"),
            'id: Invalid value: "Share": a lowercase RFC 1123 subdomain must consist of '
            "lower case alphanumeric characters, '-' or '.', and must start and end with an "
            "alphanumeric character",
        ),
        (lambda d: d.update(replicas=2), 'replicas: unknown field "replicas"'),
        (
            lambda d: d["desiredState"].update(replicas=-1),
            "desiredState.replicas: Invalid value: -1: must be greater than or equal to 0",
        ),
        (
            lambda d: d["desiredState"].update(replicas="2"),
            'desiredState.replicas: Invalid value: "2": must be an integer',
        ),
        (
            lambda d: d["desiredState"].update(replicas=1001),
            "desiredState.replicas: Invalid value: 1001: must be no more than 1000",
        ),
        (
            lambda d: d["desiredState"].pop("podTemplate"),
            "desiredState.podTemplate: Required value",
        ),
        (
            lambda d: d["desiredState"]["podTemplate"].update(desiredState=[]),
            "desiredState.podTemplate.desiredState: Invalid value: []: must be a mapping",
        ),
    ],
)
def test_legacy_errors_name_the_legacy_field(
    legacy: dict[str, Any], change: Any, line: str
) -> None:
    doc = copy.deepcopy(legacy)
    change(doc)
    assert str(error_of(doc)) == f"pod.yaml: {line}"


def test_every_example_parses_and_round_trips(examples_dir: Path) -> None:
    # config.yaml is serve's settings, not a manifest (tests/unit/test_settings.py reads it).
    files = sorted(p for p in examples_dir.glob("*.yaml") if p.name != "config.yaml")
    assert len(files) >= 7, files
    kinds = set()
    for path in files:
        objects = load_manifests(path.read_text(), path.name)
        assert objects, path
        for obj in objects:
            kinds.add(obj.kind)
            assert parse_object(obj.to_k8s()) == [obj], path
    assert {"Pod", "PersistentVolume", "PersistentVolumeClaim", "StorageClass"} <= kinds


def test_the_readmes_quick_start_pod_is_the_example_it_names(examples_dir: Path) -> None:
    readme = (examples_dir.parent / "README.md").read_text()
    shown = readme.split("```yaml\n", 1)[1].split("```", 1)[0]
    assert yaml.safe_load(shown) == yaml.safe_load(
        (examples_dir / "pod-emptydir.yaml").read_text())
    assert "volfs apply -f examples/pod-emptydir.yaml" in readme


def test_a_value_that_looks_like_another_is_shown_as_what_it_is() -> None:
    # A Unicode hyphen in a name reads like "-"; the message shows which character it is.
    doc = pod_doc(volumes=[{"name": "data", "hostPath": {"path": "srv\u2010data"}}])
    assert str(error_of(doc)) == ('pod.yaml: spec.volumes[0].hostPath.path: Invalid value: '
                                  '"srv\\u2010data": must be an absolute path')


# -- nesting depth ------------------------------------------------------------------------

DEEP = 5000
TOO_DEEP = f"nested more than {MAX_DEPTH} levels deep (mappings and lists; at most {MAX_DEPTH})"


def nested_labels(depth: int, flow: bool = True) -> str:
    """A pod manifest whose ``metadata.labels`` opens ``depth`` lists inside each other."""
    # Block style, compact: "- - - x" is three lists inside each other.
    value = "[" * depth + "]" * depth if flow else "\n    " + "- " * depth + "x"
    return f"apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  labels: {value}\n"


@pytest.mark.parametrize("flow", [True, False], ids=["flow", "block"])
def test_a_manifest_nested_thousands_deep_is_one_line_error(flow: bool) -> None:
    with pytest.raises(ManifestError) as raised:
        load_manifests(nested_labels(DEEP, flow), "pod.yaml")
    line = str(raised.value)
    assert line.startswith("pod.yaml: line ") and line.endswith(TOO_DEEP), line
    assert "\n" not in line


def test_json_and_yaml_documents_nest_up_to_the_cap() -> None:
    def nested(depth: int) -> str:
        return "[" * depth + "]" * depth

    for decode in (decode_json, decode_yaml):
        assert decode(nested(MAX_DEPTH)) is not None
        for depth in (MAX_DEPTH + 1, DEEP):
            with pytest.raises(TooDeep) as raised:
                decode(nested(depth))
            assert str(raised.value).endswith(TOO_DEEP)
    with pytest.raises(TooDeep):
        decode_json(nested(DEEP).encode())


def test_yaml_aliases_cannot_nest_past_the_cap_or_contain_themselves() -> None:
    # Each anchor one level deep, each referring to the one before: deep only once built.
    chain = "a0: &a0 [x]\n" + "".join(f"a{i}: &a{i} [*a{i - 1}]\n" for i in range(1, DEEP))
    for text, problem in ((chain, TOO_DEEP), ("&loop [*loop]", "the document contains itself")):
        with pytest.raises(TooDeep, match=problem.replace("(", r"\(").replace(")", r"\)")):
            decode_yaml(text)
        with pytest.raises(ManifestError, match="^m.yaml: "):
            load_manifests(text, "m.yaml")


def test_check_depth_measures_shared_parts_once() -> None:
    shared: list[Any] = [[]]
    for _ in range(60):  # 2**60 paths through 60 lists: only a memo gets through
        shared = [shared, shared]
    check_depth(shared)
    deeper: Any = shared
    for _ in range(MAX_DEPTH - 62):  # the lists are 62 deep: 100 in all
        deeper = {"k": deeper}
    check_depth(deeper)
    with pytest.raises(TooDeep):
        check_depth({"k": deeper})
