"""Parsing where an NFS volume lives and how to reach it (no network)."""

from __future__ import annotations

import errno

import pytest

from volfs.api import NFSVolumeSource, Volume
from volfs.lifecycle.nfs import NfsPlugin, NfsRefused
from volfs.stores.nfs import NfsOptions, NfsTarget, OptionError, Timeouts
from volfs.stores.nfs.options import split_relative


def test_defaults_are_linux_hard_mount_defaults_but_bounded() -> None:
    options = NfsOptions.parse([])
    assert (options.version, options.soft, options.timeo, options.retrans) == (3, False, 600, 2)
    assert options.timeouts == Timeouts(attempt=60.0, total=180.0, errno=errno.EIO)


@pytest.mark.parametrize(("given", "timeouts"), [
    (["soft", "timeo=20", "retrans=1"], Timeouts(2.0, 4.0, errno.EIO)),
    (["softerr,timeo=10,retrans=0"], Timeouts(1.0, 1.0, errno.ETIMEDOUT)),
    (["hard", "timeo=10", "retrans=1"], Timeouts(1.0, 120.0, errno.EIO)),
    (["hard,timeo=10,retry=0.5"], Timeouts(1.0, 30.0, errno.EIO)),
    (["soft", "hard", "timeo=10"], Timeouts(1.0, 120.0, errno.EIO)),
])
def test_timeouts_follow_nfs5(given: list[str], timeouts: Timeouts) -> None:
    assert NfsOptions.parse(given).timeouts == timeouts


def test_ports_version_and_harmless_options() -> None:
    options = NfsOptions.parse(["nfsvers=3", "port=2050,mountport=20049", "noatime",
                                "nolock", "proto=tcp", "sec=sys", "rsize=1048576", "ro"])
    assert (options.port, options.mount_port, options.read_only) == (2050, 20049, True)
    assert NfsOptions.parse(["port=0"]).port is None  # ask the portmapper


@pytest.mark.parametrize(("option", "message"), [
    ("nfsvers=4.1", "mount option nfsvers=4.1: volfs speaks NFS version 3 only"),
    ("vers=4", "mount option vers=4: volfs speaks NFS version 3 only"),
    ("udp", "mount option udp: volfs speaks NFS over TCP only"),
    ("proto=udp", "mount option proto=udp: volfs speaks NFS over TCP only"),
    ("sec=krb5", "mount option sec=krb5: volfs supports sec=sys only"),
    ("timeo=soon", "mount option timeo=soon: not a number"),
    ("timeo=0", "mount option timeo=0: must be at least 1"),
    ("retrans=-1", "mount option retrans=-1: must not be negative"),
    ("frobnicate", "mount option frobnicate: not known to volfs"),
])
def test_options_volfs_cannot_honour_are_refused_in_one_line(option: str, message: str) -> None:
    with pytest.raises(OptionError) as info:
        NfsOptions.parse([option])
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_a_path_may_carry_libnfs_url_arguments() -> None:
    target = NfsTarget.parse(" 127.0.0.1 ", "/srv//nfs/./pv1/?nfsport=2050&mountport=20049"
                             "&soft&timeo=20&version=3")
    assert (target.server, target.export) == ("127.0.0.1", "/srv/nfs/pv1")
    assert (target.options.port, target.options.mount_port) == (2050, 20049)
    assert target.options.soft and target.options.timeo == 20
    assert str(target) == "127.0.0.1:/srv/nfs/pv1"
    assert target.below("ns/claim").export == "/srv/nfs/pv1/ns/claim"
    assert NfsTarget.parse("[::1]", "/").server == "::1"


@pytest.mark.parametrize(("server", "path", "message"), [
    ("", "/x", "server: must not be empty"),
    ("s", "x", "path x: must be absolute"),
    ("s", "/a/../b", "path /a/../b: must not contain '..'"),
])
def test_bad_targets(server: str, path: str, message: str) -> None:
    with pytest.raises(OptionError, match=message):
        NfsTarget.parse(server, path)


def test_sub_directories_stay_below_the_share() -> None:
    assert split_relative("a//b/./c/") == ["a", "b", "c"]
    assert split_relative("") == []
    for bad in ("/abs", "a/../b", ".."):
        with pytest.raises(ValueError):
            split_relative(bad)


def test_the_plugin_refuses_bad_volumes_before_making_anything() -> None:
    plugin = NfsPlugin()
    assert (plugin.source_kind, plugin.kind_dir) == ("nfs", "kubernetes.io~nfs")
    plugin.check(Volume(name="ok", nfs=NFSVolumeSource(server="s", path="/x")))
    with pytest.raises(NfsRefused) as info:
        plugin.check(Volume(name="v", nfs=NFSVolumeSource(server="s", path="/x?vers=4")))
    assert str(info.value) == ("s:/x?vers=4: mount option vers=4: volfs speaks NFS version 3 "
                               "only (use nfsvers=3 or leave it out)")
    assert info.value.field == "path"
    described = plugin.describe(Volume(name="v", nfs=NFSVolumeSource(server="s", path="/x")))
    assert described == {"server": "s", "export": "/x"}
