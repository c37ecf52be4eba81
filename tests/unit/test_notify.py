"""systemd's notification protocol, against a real datagram socket of the test's own."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.notify_socket import bound_notify_socket
from volfs.notify import ENV, notify, socket_address


@pytest.fixture(params=["path", "abstract"])
def listener(request: pytest.FixtureRequest, tmp_path: Path,
             monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A datagram socket named in $NOTIFY_SOCKET, as systemd makes one: a path, or @name."""
    sock, value = bound_notify_socket(request.param, tmp_path, timeout=5)
    monkeypatch.setenv(ENV, value)
    yield sock
    sock.close()


def test_fields_arrive_as_one_datagram_of_lines(listener: socket.socket) -> None:
    assert notify("READY=1", "STATUS=serving /var/lib/volfs")
    assert listener.recv(4096) == b"READY=1\nSTATUS=serving /var/lib/volfs"


def test_without_notify_socket_nothing_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    assert not notify("READY=1")
    monkeypatch.setenv(ENV, "")
    assert not notify("READY=1")


def test_a_socket_nobody_listens_on_is_a_warning_not_an_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv(ENV, str(tmp_path / "gone"))
    assert not notify("READY=1")
    assert f"cannot tell the service manager READY=1 through {ENV}=" in caplog.text


def test_an_at_sign_names_the_abstract_namespace() -> None:
    assert socket_address("@x/y") == "\0x/y"
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
