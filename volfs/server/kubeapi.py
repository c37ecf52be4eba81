"""The Kubernetes API on loopback TCP, for kubectl: TLS, a bearer token, and a kubeconfig.

The unix socket stays the volfs CLI's way in (root-only, by its mode). ``volfs serve
--kube-api 127.0.0.1:PORT`` also serves the same API on a loopback TCP port, where
every request must carry ``Authorization: Bearer <token>``. A request without it is
answered as the API server answers one it cannot authenticate: 401 with a ``Status``
of reason ``Unauthorized``.

The listener speaks HTTPS, not HTTP: kubectl (client-go) sends a kubeconfig's
credentials only over TLS, so a token-protected plain-HTTP port would be unusable.
The daemon makes its credentials once and keeps them in the state dir (mode 0600):

    kube-api.token   the bearer token (``secrets.token_urlsafe``)
    kube-api.key     an EC P-256 key
    kube-api.crt     a self-signed certificate for 127.0.0.1, ::1 and localhost

``volfs kubeconfig`` asks the daemon for a kubeconfig over the unix socket
(``GET /volfs/v1/kubeconfig``): the server URL, the certificate to trust
(``certificate-authority-data``) and the token, so only root gets it::

    kubectl --kubeconfig <(sudo volfs kubeconfig) get pods
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import errno
import hmac
import ipaddress
import json
import os
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from starlette.types import ASGIApp, Receive, Scope, Send

from volfs.config import loopback_address
from volfs.server import status as st
from volfs.server.serve import serve_socket

TOKEN_FILE = "kube-api.token"
CERT_FILE = "kube-api.crt"
KEY_FILE = "kube-api.key"
PRIVATE_MODE = 0o600
CERT_DAYS = 3650
CONTEXT = "volfs"


@dataclass(frozen=True)
class Credentials:
    """What the listener needs: the token to expect, and its TLS certificate and key."""

    token: str
    cert_path: Path
    key_path: Path
    certificate: bytes  # PEM, for the kubeconfig's certificate-authority-data


def load_or_create_credentials(state_dir: Path) -> Credentials:
    """The credentials kept in ``state_dir``, made the first time (files 0600, never wider).

    A missing, unreadable or expired certificate is made again; the token is kept.

    Raises:
        OSError: a file cannot be read or written; ValueError: the token file is empty.
    """
    token = _load_or_create_token(state_dir / TOKEN_FILE)
    cert_path, key_path = state_dir / CERT_FILE, state_dir / KEY_FILE
    certificate = _usable_certificate(cert_path, key_path)
    if certificate is None:
        certificate = _create_certificate(cert_path, key_path)
    return Credentials(token, cert_path, key_path, certificate)


def _load_or_create_token(path: Path) -> str:
    _write_new(path, (secrets.token_urlsafe(32) + "\n").encode())
    token = path.read_text().strip()
    if not token:
        raise ValueError(f"{path} is empty: remove it and a new token is made")
    return token


def _write_new(path: Path, data: bytes, *, replace: bool = False) -> None:
    """Write ``data`` to ``path`` with mode 0600 from the start; an existing file is kept
    unless ``replace``. Either way the file ends up 0600."""
    if replace:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    with contextlib.suppress(FileExistsError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, PRIVATE_MODE)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
    if os.stat(path).st_mode & 0o077:
        os.chmod(path, PRIVATE_MODE)


def _usable_certificate(cert_path: Path, key_path: Path) -> bytes | None:
    try:
        pem = cert_path.read_bytes()
        certificate = x509.load_pem_x509_certificate(pem)
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError):
        return None
    soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)
    if certificate.not_valid_after_utc < soon or key.public_key() != certificate.public_key():
        return None
    for path in (cert_path, key_path):
        if os.stat(path).st_mode & 0o077:
            os.chmod(path, PRIVATE_MODE)
    return pem


def _create_certificate(cert_path: Path, key_path: Path) -> bytes:
    """A self-signed certificate (its own CA) for the loopback names; returns its PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "volfs kube-api")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=CERT_DAYS))
        .add_extension(x509.SubjectAlternativeName([
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1")),
            x509.DNSName("localhost"),
        ]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    pem = certificate.public_bytes(serialization.Encoding.PEM)
    _write_new(key_path, key_pem, replace=True)
    _write_new(cert_path, pem, replace=True)
    return pem


def bind_loopback(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``, which must be a loopback address.

    Raises:
        ValueError: ``host`` is not a loopback IP address.
        OSError: the address cannot be bound (in use, ...).
    """
    address = loopback_address(host)
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    return sock


def server_url(sock: socket.socket) -> str:
    """``https://127.0.0.1:PORT`` (``https://[::1]:PORT``) for a bound socket."""
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"https://{shown}:{port}"


def kubeconfig(server: str, credentials: Credentials, *, name: str = CONTEXT) -> dict[str, Any]:
    """A kubeconfig (``kind: Config``) whose current context ``name`` reaches ``server``."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {
            "server": server,
            "certificate-authority-data": base64.b64encode(credentials.certificate).decode(),
        }}],
        "users": [{"name": name, "user": {"token": credentials.token}}],
        "contexts": [{"name": name,
                      "context": {"cluster": name, "user": name, "namespace": "default"}}],
        "current-context": name,
        "preferences": {},
    }


class BearerAuth:
    """ASGI middleware: only requests with ``Authorization: Bearer <token>`` reach ``app``."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        if not token:
            raise ValueError("an empty token would let everyone in")
        self._app = app
        self._expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            given = b""
            for header, value in scope.get("headers") or []:
                if header == b"authorization":
                    given = value
            if not hmac.compare_digest(given, self._expected):
                await _unauthorized(send)
                return
        await self._app(scope, receive, send)


async def _unauthorized(send: Send) -> None:
    body = json.dumps(st.unauthorized()).encode()
    await send({"type": "http.response.start", "status": 401,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def serve_kube_api(
    app: ASGIApp,
    sock: socket.socket,
    credentials: Credentials,
    *,
    task_status: trio.TaskStatus[dict[str, Any]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` over HTTPS on the bound loopback ``sock`` to holders of the token.

    Runs until cancelled; ``task_status.started()`` is given the kubeconfig that
    reaches it.
    """

    async def run(task_status: trio.TaskStatus[None]) -> None:
        await serve_socket(BearerAuth(app, credentials.token), sock,
                           tls=(credentials.cert_path, credentials.key_path),
                           task_status=task_status)

    async with trio.open_nursery() as nursery:
        await nursery.start(run)
        task_status.started(kubeconfig(server_url(sock), credentials))


def describe_bind_error(exc: OSError) -> str:
    """One line for a failed bind: ``address already in use``, ..."""
    if exc.errno == errno.EADDRINUSE:
        return "address already in use (another process listens there)"
    return exc.strerror or str(exc)
