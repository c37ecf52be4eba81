"""A TCP proxy in front of an NFS server's port that makes it slow or cuts replies.

volfs reaches the NFS port through the proxy (the volume's ``nfsport`` names the
proxy's port; MOUNT goes to the server directly). The proxy reads the server's
replies as ONC RPC records (RFC 5531 record marking: a 4-byte header whose top bit
ends a record and whose other 31 bits give the fragment's length), so it can:

- hold each reply ``delay`` seconds before passing it on (a slow server), and
- ``cut`` a connection in the middle of a reply: the header and half the fragment
  are passed on, then both sides are closed (a server or network that drops the
  connection mid-reply).

Threads, not trio: the proxy runs beside a daemon in another process, and blocking
sockets keep it short.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

LOOPBACK = "127.0.0.1"


@dataclass
class ProxyStats:
    connections: int = 0
    replies: int = 0
    cuts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class NfsProxy:
    """Forwards 127.0.0.1:``port`` to ``target_port``; see the module docstring."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.delay = 0.0  # seconds each reply is held
        self.cut_every = 0  # cut the connection in the middle of every Nth reply; 0: never
        self.stats = ProxyStats()
        self._listener = socket.create_server((LOOPBACK, 0))
        self.port: int = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._stopped = threading.Event()

    def __enter__(self) -> NfsProxy:
        threading.Thread(target=self._accept, daemon=True, name="nfs-proxy").start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopped.set()
        self._listener.close()
        for sock in list(self._sockets):
            _close(sock)

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection((LOOPBACK, self.target_port))
            self._sockets += [client, server]
            with self.stats.lock:
                self.stats.connections += 1
            threading.Thread(target=_copy, args=(client, server), daemon=True).start()
            threading.Thread(target=self._replies, args=(server, client), daemon=True).start()

    def _replies(self, server: socket.socket, client: socket.socket) -> None:
        """Pass the server's records on, one fragment at a time, held or cut."""
        try:
            while True:
                header = _read_exactly(server, 4)
                (word,) = struct.unpack(">I", header)
                body = _read_exactly(server, word & 0x7FFFFFFF)
                if self.delay:
                    time.sleep(self.delay)
                if self._should_cut(word):
                    client.sendall(header + body[: len(body) // 2])
                    break
                client.sendall(header + body)
        except OSError:
            pass
        _close(server)
        _close(client)

    def _should_cut(self, word: int) -> bool:
        if not word & 0x80000000:
            return False  # count whole replies (their last fragment)
        with self.stats.lock:
            self.stats.replies += 1
            cut = bool(self.cut_every) and self.stats.replies % self.cut_every == 0
            self.stats.cuts += cut
        return cut


def _copy(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(1 << 16):
            sink.sendall(data)
    except OSError:
        pass
    _close(source)
    _close(sink)


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            raise ConnectionResetError("closed")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
