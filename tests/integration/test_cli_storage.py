"""The ``volfs`` command on PersistentVolumes, claims and StorageClasses, against a real
daemon: apply, get, describe with events, --wait, delete. Binding needs no NFS server
(nothing is mounted until a pod uses the claim), so the PVs point at any address."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

from tests.integration.daemon import VOLFS, Daemon

NO_CLASS = "no persistent volumes available for this claim and no storage class is set"

CLASSLESS_CLAIM = """\
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: scratch
spec:
  storageClassName: ""
  accessModes: [ReadWriteOnce]
  resources:
    requests:
      storage: 1Gi
"""

POD_ON_SCRATCH = """\
apiVersion: v1
kind: Pod
metadata:
  name: waiter
spec:
  containers:
    - name: main
      image: busybox
      volumeMounts:
        - { name: data, mountPath: /data }
  volumes:
    - name: data
      persistentVolumeClaim:
        claimName: scratch
"""

STORAGE_CLASS = """\
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: fast
  annotations:
    storageclass.kubernetes.io/is-default-class: "true"
provisioner: volfs.io/nfs
parameters:
  server: 127.0.0.1
  share: /srv/nfs
"""


def rows(text: str) -> dict[str, list[str]]:
    """A table's rows by their first cell (the header's under "NAME")."""
    return {line.split()[0]: line.split() for line in text.splitlines()}


def test_a_claim_waits_for_a_volume_and_binds(daemon: Daemon, examples_dir: Path) -> None:
    claim_file = str(examples_dir / "pvc-nfs.yaml")
    volume_file = str(examples_dir / "pv-nfs.yaml")

    assert daemon.cli("apply", "-f", claim_file).stdout == "persistentvolumeclaim/nfs created\n"
    table = rows(daemon.cli("get", "pvc").stdout)
    assert table["NAME"][:3] == ["NAME", "STATUS", "VOLUME"]
    assert table["nfs"][:2] == ["nfs", "Pending"]
    described = daemon.cli("describe", "pvc", "nfs").stdout
    assert "Status:        Pending" in described
    # The class "manual" names no StorageClass: Kubernetes' provisioning failure.
    assert 'ProvisioningFailed  ' in described
    assert 'storageclass.storage.k8s.io "manual" not found' in described

    # A claim with no class at all cannot be provisioned either.
    daemon.apply(CLASSLESS_CLAIM)
    described = daemon.cli("describe", "pvc", "scratch").stdout
    assert "FailedBinding  " in described and NO_CLASS in described
    assert daemon.cli("get", "pv").stderr == "No resources found\n"

    # The volume binds the claim at once; --wait sees it Bound.
    out = daemon.cli("apply", "--wait", "--timeout", "30", "-f", volume_file, "-f", claim_file)
    assert out.stdout.splitlines() == ["persistentvolume/nfs created",
                                       "persistentvolumeclaim/nfs unchanged"]
    pv = rows(daemon.cli("get", "pv").stdout)
    assert pv["NAME"][:7] == ["NAME", "CAPACITY", "ACCESS", "MODES", "RECLAIM", "POLICY",
                              "STATUS"]
    assert pv["nfs"][:6] == ["nfs", "1Gi", "RWX", "Retain", "Bound", "default/nfs"]
    assert rows(daemon.cli("get", "pvc", "nfs").stdout)["nfs"][:5] == [
        "nfs", "Bound", "nfs", "1Gi", "RWX"]
    described = daemon.cli("describe", "pv", "nfs").stdout
    for line in ("Claim:           default/nfs", "Reclaim Policy:  Retain",
                 "    Type:      NFS (an NFS mount that lasts the lifetime of a pod)",
                 "    Server:    127.0.0.1"):
        assert line in described.splitlines(), described
    claim = json.loads(daemon.cli("get", "pvc", "nfs", "-o", "json").stdout)
    assert (claim["kind"], claim["spec"]["volumeName"]) == ("PersistentVolumeClaim", "nfs")

    # Applied again: nothing to change, though the binder filled fields in.
    again = daemon.cli("apply", "-f", volume_file, "-f", claim_file).stdout
    assert again.splitlines() == ["persistentvolume/nfs unchanged",
                                  "persistentvolumeclaim/nfs unchanged"]

    deleted = daemon.cli("delete", "-f", volume_file, "-f", claim_file).stdout
    assert deleted.splitlines() == ['persistentvolumeclaim "nfs" deleted',
                                    'persistentvolume "nfs" deleted']
    gone = daemon.cli("get", "pv", "nfs", check=False)
    assert (gone.returncode, gone.stderr) == (1, 'error: persistentvolumes "nfs" not found\n')


def test_apply_wait_times_out_on_a_pod_whose_claim_is_not_bound(daemon: Daemon) -> None:
    daemon.apply(CLASSLESS_CLAIM)
    result = daemon.cli("apply", "--wait", "--timeout", "1", "-f", "-", input=POD_ON_SCRATCH,
                        check=False)
    assert result.returncode == 1, result.stderr
    assert result.stdout == "pod/waiter created\n"
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: timed out after 1s waiting for pod/waiter to be Running: "
                           "Pending (VolumesNotReady: ")
    assert 'persistentvolumeclaim "scratch"' in line

    in_use = daemon.cli("delete", "pvc", "scratch", check=False)
    assert in_use.returncode == 1 and in_use.stderr.startswith("error: ")
    assert daemon.cli("delete", "pod", "waiter").stdout == 'pod "waiter" deleted\n'
    assert daemon.cli("delete", "pvc", "scratch").stdout == (
        'persistentvolumeclaim "scratch" deleted\n')


def test_storage_classes(daemon: Daemon) -> None:
    assert daemon.apply(STORAGE_CLASS).stdout == "storageclass.storage.k8s.io/fast created\n"
    table = daemon.cli("get", "sc").stdout.splitlines()
    assert table[0].split() == ["NAME", "PROVISIONER", "RECLAIMPOLICY", "VOLUMEBINDINGMODE",
                                "ALLOWVOLUMEEXPANSION", "AGE"]
    assert table[1].split()[:5] == ["fast", "(default)", "volfs.io/nfs", "Delete", "Immediate"]
    assert daemon.apply(STORAGE_CLASS).stdout == "storageclass.storage.k8s.io/fast unchanged\n"

    relabelled = STORAGE_CLASS.replace('"true"', '"false"')
    assert daemon.apply(relabelled).stdout == "storageclass.storage.k8s.io/fast configured\n"
    assert "(default)" not in daemon.cli("get", "sc").stdout
    described = daemon.cli("describe", "storageclass", "fast").stdout
    assert "IsDefaultClass:        No" in described.splitlines()
    assert "Parameters:            server=127.0.0.1,share=/srv/nfs" in described.splitlines()

    refused = daemon.cli("apply", "-f", "-", input=relabelled.replace("/srv/nfs", "/srv/x"),
                         check=False)
    assert refused.returncode == 2
    assert refused.stderr.startswith("error: <stdin>: parameters: Forbidden")

    assert daemon.cli("delete", "sc", "fast").stdout == (
        'storageclass.storage.k8s.io "fast" deleted\n')


def test_get_watch_prints_each_change_as_the_list_printed_it(daemon: Daemon) -> None:
    daemon.cli("apply", "-f", "-", input=CLASSLESS_CLAIM)
    watching = subprocess.Popen([VOLFS, "get", "pvc", "--watch"],
                                env=daemon.env, text=True, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
    try:
        assert watching.stdout is not None
        assert watching.stdout.readline().split()[:2] == ["NAME", "STATUS"]
        assert watching.stdout.readline().split()[:2] == ["scratch", "Pending"]
        daemon.cli("apply", "-f", "-", input="""\
apiVersion: v1
kind: PersistentVolume
metadata: {name: watched-volume}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  nfs: {server: 127.0.0.1, path: /srv/nfs/watched}
""")
        assert watching.stdout.readline().split()[:3] == ["scratch", "Bound", "watched-volume"]
        daemon.cli("delete", "pvc", "scratch")
        # Its last state, marked as being deleted: never shown as a live, Bound claim.
        assert watching.stdout.readline().split()[:2] == ["scratch", "Terminating"]
        watching.send_signal(signal.SIGINT)
        assert watching.wait(timeout=30) == 0
    finally:
        watching.kill()
        watching.communicate()
    daemon.cli("delete", "pv", "watched-volume")
