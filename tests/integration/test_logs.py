"""The daemon's log as an operator reads it: ``--log-format json`` is one JSON object per
line, each event naming the pod (volume, claim, ...) it concerns; an expected failure
is one line, never a traceback."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.integration.daemon import Daemon, DaemonError, pod_manifest
from tests.integration.nfs import Ganesha, new_share


def _entries(daemon: Daemon) -> list[dict[str, Any]]:
    """Every line of the daemon's output, each parsed as JSON (the test fails on one
    that is not, naming it)."""
    entries = []
    for line in daemon.log_path.read_text().splitlines():
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"a log line is not JSON: {line!r}")
    return entries


@pytest.mark.timeout(60)
def test_json_logs_name_the_pod_of_each_event(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path / "volfs", extra_args=["--log-format", "json"]).start()
    try:
        daemon.cli("apply", "-f", "-", input=pod_manifest(
            "web", "    - name: scratch\n      emptyDir: {}\n"))
        uid = daemon.pod("web")["metadata"]["uid"]
        daemon.cli("delete", "pod", "web")
    finally:
        assert daemon.stop() == 0
    entries = _entries(daemon)
    for entry in entries:
        assert {"time", "level", "logger", "message"} <= set(entry), entry
        assert "traceback" not in entry, entry
    about_web = [e for e in entries if e.get("pod") == "default/web"]
    messages = [e["message"] for e in about_web]
    assert "pod default/web created" in messages, messages
    assert "pod default/web deleted" in messages, messages
    assert all(e["uid"] == uid and e["namespace"] == "default" for e in about_web)
    volume_lines = [e for e in about_web if e.get("volume") == "scratch"]
    assert [e["message"] for e in volume_lines] == [
        "pod default/web: volume scratch set up", "pod default/web: volume scratch torn down"]
    assert {e["reason"] for e in about_web if e["logger"] == "volfs.events"} >= {
        "Created", "Killing"}


@pytest.mark.timeout(60)
def test_an_expected_start_failure_is_one_json_line(daemon: Daemon, tmp_path: Path) -> None:
    twin = Daemon(tmp_path / "twin", extra_args=["--log-format", "json"])
    twin.base.mkdir()
    os.symlink(daemon.state_dir, twin.state_dir)  # the running daemon holds its lock
    with pytest.raises(DaemonError):
        twin.start()
    errors = [e for e in _entries(twin) if e["level"] == "ERROR"]
    assert len(errors) == 1, errors
    assert "another volfs daemon" in errors[0]["message"]
    assert "traceback" not in errors[0]


@pytest.mark.timeout(60)
def test_text_logs_carry_the_fields_too(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path / "volfs").start()
    try:
        daemon.apply(pod_manifest("web", "    - name: scratch\n      emptyDir: {}\n"))
        uid = daemon.pod("web")["metadata"]["uid"]
    finally:
        daemon.stop()
    lines = daemon.log_path.read_text().splitlines()
    assert (f"volfs: INFO lifecycle.pods: pod default/web created pod=default/web "
            f"namespace=default uid={uid}") in lines, lines


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_an_nfs_server_going_away_and_back_is_logged_once_each_naming_it(
        tmp_path: Path, own_ganesha: Ganesha) -> None:
    share = new_share(own_ganesha, "logs")
    daemon = Daemon(tmp_path / "volfs", extra_args=["--log-format", "json"]).start()
    try:
        daemon.apply(pod_manifest("web", share.volume(soft=True, timeo=10, retrans=1)))
        data = daemon.volume_path("web", "data")
        own_ganesha.stop()
        for attempt in range(3):  # retried calls: one line says the server is gone
            with pytest.raises(OSError) as excinfo:
                (data / f"while-down-{attempt}").write_text("no")
            assert excinfo.value.errno == errno.EIO
        own_ganesha.start()
        (data / "after").write_text("yes")
    finally:
        assert daemon.stop() == 0
    about_server = [e for e in _entries(daemon) if e.get("server") == share.server]
    assert [(e["level"], e["message"].split(": ")[1]) for e in about_server] == [
        ("WARNING", "server unreachable"), ("INFO", "server reachable again")], about_server
    assert all("traceback" not in e for e in _entries(daemon))
