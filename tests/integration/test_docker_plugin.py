"""Docker's volume-plugin protocol, driven by a real engine through the docker CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.daemon import Daemon
from tests.integration.docker import IMAGE, Engine, docker_engine, plugin_name, volfs_for
from tests.integration.nfs import NfsShare
from tests.waiting import wait_until

__all__ = ["docker_engine"]  # the fixture, used by name

pytestmark = pytest.mark.slow


@dataclass
class Plugin:
    volfs: Daemon
    engine: Engine
    name: str
    host_dir: Path

    def docker(self, *args: str, check: bool = True) -> Any:
        return self.engine.docker(*args, check=check)

    def create(self, volume: str, *options: str, check: bool = True) -> Any:
        opts = [a for o in options for a in ("--opt", o)]
        return self.docker("volume", "create", "-d", self.name, *opts, volume, check=check)

    def listed(self) -> list[str]:
        # Filtered by driver: Docker then asks this plugin only, not every one it knows.
        out = self.docker("volume", "ls", "-q", "--filter", f"driver={self.name}").stdout
        return sorted(out.split())

    def inspect(self, volume: str) -> dict[str, Any]:
        return json.loads(self.docker("volume", "inspect", volume).stdout)[0]  # type: ignore[no-any-return]

    def call(self, endpoint: str, **body: Any) -> dict[str, Any]:
        """One request of the protocol, as Docker sends it."""
        socket = f"/run/docker/plugins/{self.name}.sock"
        with httpx.Client(transport=httpx.HTTPTransport(uds=socket), base_url="http://plugin",
                          timeout=30) as client:
            response = client.post(f"/{endpoint}", json=body)
        assert response.headers["content-type"] == "application/vnd.docker.plugins.v1.2+json"
        return response.json()  # type: ignore[no-any-return]

    def volume_pods(self) -> list[str]:
        out = self.volfs.cli("get", "pods", "-n", "docker-volumes", "-o", "json").stdout
        return [p["metadata"]["name"] for p in json.loads(out)["items"]]


@pytest.fixture
def plugin(tmp_path: Path, docker_engine: Engine) -> Iterator[Plugin]:
    host_dir = tmp_path / "host"
    host_dir.mkdir()
    name = plugin_name()
    volfs = volfs_for(docker_engine, tmp_path / "volfs", "--allow-host-path", str(host_dir),
                      plugin=name).start()
    setup = Plugin(volfs, docker_engine, name, host_dir)
    try:
        yield setup
    finally:
        try:
            for volume in setup.listed():
                for container in docker_engine.containers(f"volume={volume}"):
                    docker_engine.docker("rm", "-f", container, check=False)
                docker_engine.docker("volume", "rm", "-f", volume, check=False)
        finally:
            volfs.stop()


def test_activate_and_capabilities(plugin: Plugin) -> None:
    assert plugin.call("Plugin.Activate") == {"Implements": ["VolumeDriver"]}
    assert plugin.call("VolumeDriver.Capabilities") == {"Capabilities": {"Scope": "local"}}


def test_empty_dir_volume_create_mount_unmount_remove(plugin: Plugin) -> None:
    plugin.create("scratch", "type=emptyDir", "sizeLimit=64Mi")
    assert plugin.listed() == ["scratch"]
    info = plugin.inspect("scratch")
    mountpoint = Path(info["Mountpoint"])
    assert mountpoint.is_relative_to(plugin.volfs.root / "pods")
    assert mountpoint.name == "scratch" and mountpoint.parent.name == "kubernetes.io~empty-dir"
    assert info["Status"]["sizeLimitBytes"] == 64 * 1024 * 1024
    assert plugin.volume_pods() == ["scratch"]

    plugin.docker("run", "--rm", "--network", "none", "-v", "scratch:/data", IMAGE,
                  "sh", "-c", "echo from a container > /data/note")
    assert (mountpoint / "note").read_text() == "from a container\n"
    assert plugin.inspect("scratch")["Status"]["usedBytes"] == len("from a container\n")

    plugin.docker("run", "-d", "--name", f"{plugin.name}-user", "--network", "none",
                  "-v", "scratch:/data", IMAGE)
    assert plugin.inspect("scratch")["Status"]["mounts"] == 1
    refused = plugin.call("VolumeDriver.Remove", Name="scratch")
    assert refused["Err"] == (f"volume scratch is in use: mounted 1 time(s) (by "
                              f"{plugin.name}-user); unmount it first")
    assert mountpoint.is_dir()

    plugin.docker("rm", "-f", f"{plugin.name}-user")  # unmounts
    assert plugin.inspect("scratch")["Status"]["mounts"] == 0
    plugin.docker("volume", "rm", "scratch")
    assert plugin.listed() == []
    assert plugin.volume_pods() == []
    assert not mountpoint.exists()


def test_host_path_volume_and_refusals(plugin: Plugin) -> None:
    target = plugin.host_dir / "logs"
    plugin.create("logs", "type=hostPath", f"path={target}", "hostPathType=DirectoryOrCreate")
    plugin.docker("run", "--rm", "--network", "none", "-v", "logs:/logs", IMAGE,
                  "sh", "-c", "echo line > /logs/app.log")
    assert (target / "app.log").read_text() == "line\n"
    plugin.docker("volume", "rm", "logs")
    assert (target / "app.log").exists()  # host data is never touched

    outside = plugin.create("etc", "type=hostPath", "path=/etc", check=False)
    assert outside.returncode != 0 and "/etc" in outside.stderr
    assert "allow" in outside.stderr
    unknown = plugin.create("odd", "color=blue", check=False)
    assert "unknown option color for a emptyDir volume" in unknown.stderr
    bad = plugin.create("lots", "sizeLimit=lots", check=False)
    assert "option sizeLimit:" in bad.stderr
    kind = plugin.create("nfs", "type=nfs", check=False)
    assert "unknown volume type nfs" in kind.stderr
    assert plugin.listed() == []
    assert plugin.volume_pods() == []


def test_claim_volume(plugin: Plugin, nfs_share: NfsShare) -> None:
    missing = plugin.create("early", "claim=nowhere", check=False)  # refused at create
    assert missing.returncode != 0
    assert ('persistentvolumeclaim "nowhere" not found in namespace docker-volumes'
            in missing.stderr), missing.stderr
    assert plugin.listed() == [] and plugin.volume_pods() == []

    assert plugin.volfs.api("POST", "/api/v1/namespaces/docker-volumes/persistentvolumeclaims", {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "shared"},
        "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "",
                 "resources": {"requests": {"storage": "1Gi"}}}}).status_code == 201
    plugin.create("shared", "claim=shared")  # no PV yet: it waits for its claim to bind
    early = plugin.docker("run", "--rm", "--network", "none", "-v", "shared:/data", IMAGE,
                          "true", check=False)
    assert early.returncode != 0
    assert "volume shared is not ready" in early.stderr, early.stderr
    assert plugin.volfs.api("POST", "/api/v1/persistentvolumes", {
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "shared-pv"},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany"],
                 "storageClassName": "", "nfs": {"server": nfs_share.server,
                                                 "path": nfs_share.path()}}}).status_code == 201
    wait_until(lambda: plugin.inspect("shared")["Mountpoint"], 60,
               "the claim's volume never appeared once its claim could bind")
    plugin.docker("run", "--rm", "--network", "none", "-v", "shared:/data", IMAGE,
                  "sh", "-c", "echo from-a-container > /data/note")
    assert (nfs_share.dir / "note").read_text() == "from-a-container\n"  # on the NFS server


def test_size_limit_is_enospc_in_a_container(plugin: Plugin) -> None:
    plugin.create("small", "sizeLimit=1Mi")
    full = plugin.docker("run", "--rm", "--network", "none", "-v", "small:/data", IMAGE,
                         "dd", "if=/dev/zero", "of=/data/big", "bs=64k", "count=64",
                         check=False)
    assert full.returncode != 0
    assert "No space left on device" in full.stderr


def test_as_uid_1000_a_root_only_directory_is_refused(plugin: Plugin) -> None:
    plugin.create("perm")
    plugin.docker("run", "--rm", "--network", "none", "-v", "perm:/data", IMAGE,
                  "sh", "-c", "mkdir -m 0700 /data/private && mkdir -m 0777 /data/open")
    denied = plugin.docker("run", "--rm", "--network", "none", "--user", "1000:1000",
                           "-v", "perm:/data", IMAGE, "touch", "/data/private/x", check=False)
    assert denied.returncode != 0 and "Permission denied" in denied.stderr
    plugin.docker("run", "--rm", "--network", "none", "--user", "1000:1000",
                  "-v", "perm:/data", IMAGE, "touch", "/data/open/x")


def test_restart_keeps_volumes_data_and_mount_references(plugin: Plugin) -> None:
    plugin.create("kept", "sizeLimit=8Mi")
    plugin.create("Other_Name")
    plugin.docker("run", "--rm", "--network", "none", "-v", "kept:/data", IMAGE,
                  "sh", "-c", "echo survives > /data/f")
    before = plugin.inspect("kept")
    # a mount Docker still holds (its container outlives the restart)
    assert plugin.call("VolumeDriver.Mount", Name="kept", ID="held")["Mountpoint"] \
        == before["Mountpoint"]

    plugin.volfs.stop()  # no container is running
    plugin.volfs.start()

    assert plugin.listed() == ["Other_Name", "kept"]
    after = plugin.inspect("kept")
    assert after["Mountpoint"] == before["Mountpoint"]
    assert after["Status"]["mounts"] == 1
    assert after["Status"]["usedBytes"] == len("survives\n")
    out = plugin.docker("run", "--rm", "--network", "none", "-v", "kept:/data", IMAGE,
                        "cat", "/data/f").stdout
    assert out == "survives\n"

    # "held" is no container's, as after an engine that crashed: asked at removal, the
    # engine says no container uses the volume, so that mount is forgotten, not kept
    # for ever in the way of `docker volume rm`.
    plugin.docker("volume", "rm", "kept", "Other_Name")
    assert plugin.listed() == []
    assert plugin.volume_pods() == []
    assert "docker volume kept: forgetting 1 mount(s)" in plugin.volfs.log()
