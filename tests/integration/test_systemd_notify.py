"""``volfs serve`` under a ``Type=notify`` unit: READY=1 once clients can use it,
STOPPING=1 when a stop begins. The socket stands in for systemd's."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.integration.daemon import Daemon
from tests.notify_socket import bound_notify_socket
from tests.waiting import wait_until


@dataclass
class Manager:
    """What a service manager hears on its notification socket, and what it sees of
    the daemon at the moment READY=1 arrives."""

    sock: socket.socket
    root: Path
    control_socket: Path
    messages: list[str] = field(default_factory=list)
    seen_at_ready: dict[str, bool] = field(default_factory=dict)
    ready: threading.Event = field(default_factory=threading.Event)

    def listen(self) -> None:
        while True:
            try:
                message = self.sock.recv(4096).decode()
            except OSError:  # closed, or nothing for the socket's timeout
                return
            if "READY=1" in message.splitlines() and not self.ready.is_set():
                self.seen_at_ready = {"mounted": os.path.ismount(self.root),
                                      "control socket": self.control_socket.exists()}
                self.ready.set()
            self.messages.append(message)
            if "STOPPING=1" in message.splitlines():
                return


@pytest.fixture(params=["path", "abstract"])
def manager(request: pytest.FixtureRequest, tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Manager, Daemon]]:
    sock, value = bound_notify_socket(request.param, tmp_path, timeout=30)
    monkeypatch.setenv("NOTIFY_SOCKET", value)  # inherited by the daemon
    daemon = Daemon(tmp_path / "volfs")
    heard = Manager(sock, daemon.root, daemon.socket)
    thread = threading.Thread(target=heard.listen, daemon=True)
    thread.start()
    yield heard, daemon
    daemon.stop()
    sock.close()
    thread.join(10)


@pytest.mark.timeout(60)
def test_ready_once_the_mount_and_sockets_are_up_and_stopping_at_sigterm(
        manager: tuple[Manager, Daemon]) -> None:
    heard, daemon = manager
    daemon.start()
    assert heard.ready.wait(30), heard.messages
    assert heard.seen_at_ready == {"mounted": True, "control socket": True}
    assert heard.messages[0] == "STATUS=restoring pods"
    assert heard.messages[1] == f"READY=1\nSTATUS=serving {daemon.root}"
    assert daemon.stop() == 0
    assert heard.messages[-1] == "STOPPING=1\nSTATUS=unmounting", heard.messages
    assert len(heard.messages) == 3, heard.messages


@pytest.mark.timeout(60)
def test_an_unreachable_notify_socket_does_not_stop_the_daemon(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens"))
    daemon = Daemon(tmp_path / "volfs").start()
    try:
        wait_until(lambda: "cannot tell the service manager READY=1" in daemon.log(), 10,
                   "no warning that READY=1 could not be sent")
        assert daemon.stop() == 0  # the daemon served on, and stops cleanly
    finally:
        daemon.stop()
