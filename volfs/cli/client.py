"""The CLI's side of the control API: HTTP+JSON over the daemon's unix socket."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from volfs.cli.kinds import Kind

if TYPE_CHECKING:
    # Imported by the first Client: ``volfs serve`` never makes one, and importing httpx
    # (~25 ms) would delay its start, before the mount.
    import httpx

# Reads may wait for create/delete hooks (each bounded by the daemon's --hook-timeout);
# connecting to a local socket either works at once or not at all: (total, connect,
# read; None: no bound).
_TIMEOUT = (30.0, 5.0, None)
_GET_TIMEOUT = (30.0, 5.0, 30.0)
# What kubectl sends to have the server print an object as ``kubectl get`` does.
TABLE_ACCEPT = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
_WARNING = re.compile(r'^\s*\d{3}\s+\S+\s+"((?:[^"\\]|\\.)*)"')


class ClientError(Exception):
    """A request that failed; ``str()`` is the one line the CLI prints after ``error:``."""


class DaemonUnreachable(ClientError):
    """Nothing answers on the socket (missing, refused) or it may not be used."""


class ApiError(ClientError):
    """The daemon answered with a Kubernetes Status."""

    def __init__(self, code: int, status: dict[str, Any]) -> None:
        self.code = code
        self.status = status
        self.reason: str = str(status.get("reason") or "")
        details = status.get("details")
        details = details if isinstance(details, dict) else {}
        self.causes: list[tuple[str, str]] = [
            (str(c.get("field") or ""), str(c.get("message") or ""))
            for c in details.get("causes") or []
            if isinstance(c, dict)
        ]
        super().__init__(status_message(status, code))


def status_message(status: dict[str, Any], code: int | None = None) -> str:
    """One line for a Status: the first cause of an Invalid, else its message.

    >>> status_message({"reason": "NotFound", "message": 'pods "web" not found'})
    'pods "web" not found'
    >>> status_message({"reason": "Invalid", "message": 'Pod "web" is invalid: ...',
    ...     "details": {"causes": [{"field": "spec.volumes", "message": "Required value"}]}})
    'spec.volumes: Required value'
    """
    details = status.get("details")
    causes = (details.get("causes") or []) if isinstance(details, dict) else []
    if status.get("reason") == "Invalid" and causes and isinstance(causes[0], dict):
        field, message = causes[0].get("field") or "", causes[0].get("message") or ""
        text = f"{field}: {message}" if field else str(message)
    else:
        text = str(status.get("message") or status.get("reason") or f"HTTP {code}")
    return " ".join(text.split())  # one line, whatever the server sent


class Client:
    """A connection to the volfs daemon's control API.

    Example::

        with Client(Path("/var/lib/volfs-state/volfs.sock")) as client:
            pods = client.list_pods("default")["items"]

    Every method raises DaemonUnreachable when the daemon cannot be reached, and
    ApiError when it refuses.
    """

    def __init__(self, socket_path: Path) -> None:
        import httpx

        self.socket_path = socket_path
        self._http = httpx.Client(
            transport=httpx.HTTPTransport(uds=str(socket_path)),
            base_url="http://volfs",
            timeout=_timeout(_TIMEOUT),
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def list_pods(self, namespace: str | None) -> dict[str, Any]:
        """The PodList of one namespace, or of all when ``namespace`` is None."""
        path = "/api/v1/pods" if namespace is None else f"{_ns(namespace)}/pods"
        return self._json("GET", path)[0]

    def get_pod(self, namespace: str, name: str) -> dict[str, Any]:
        return self._json("GET", _pod(namespace, name))[0]

    def create_pod(self, namespace: str, obj: dict[str, Any]) -> dict[str, Any]:
        return self._json("POST", f"{_ns(namespace)}/pods", obj)[0]

    def delete_pod(self, namespace: str, name: str) -> tuple[dict[str, Any], list[str]]:
        """The deleted pod, and the warnings the daemon sent with it."""
        return self._json("DELETE", _pod(namespace, name))

    # -- any kind (volfs.cli.kinds) -------------------------------------------------------

    def list_objects(self, kind: Kind, namespace: str | None, *, labels: str | None = None,
             fields: str | None = None, table: bool = False) -> dict[str, Any]:
        """The ``<Kind>List`` (or with ``table``, a ``meta.k8s.io`` Table) of one
        namespace, or of all when ``namespace`` is None; ``labels`` and ``fields`` are
        selectors as kubectl's ``-l`` and ``--field-selector`` take them."""
        params = {key: value for key, value in
                  (("labelSelector", labels), ("fieldSelector", fields)) if value}
        return self._json("GET", kind.collection(namespace), params=params,
                          accept=TABLE_ACCEPT if table else None)[0]

    def get_object(self, kind: Kind, namespace: str | None, name: str, *,
            table: bool = False) -> dict[str, Any]:
        return self._json("GET", kind.item(namespace, name),
                          accept=TABLE_ACCEPT if table else None)[0]

    def create_object(self, kind: Kind, namespace: str | None,
                      obj: dict[str, Any]) -> dict[str, Any]:
        return self._json("POST", kind.collection(namespace), obj)[0]

    def replace_object(self, kind: Kind, namespace: str | None,
                       obj: dict[str, Any]) -> dict[str, Any]:
        """PUT ``obj`` in place of the stored object of its name (a ``resourceVersion``
        in its metadata is a precondition: 409 Conflict if the object changed since)."""
        name = str((obj.get("metadata") or {}).get("name") or "")
        return self._json("PUT", kind.item(namespace, name), obj)[0]

    def delete_object(self, kind: Kind, namespace: str | None, name: str,
                      grace_seconds: int | None = None) -> tuple[dict[str, Any], list[str]]:
        """The deleted object, and the warnings the daemon sent with it.

        ``grace_seconds`` goes as kubectl sends it, in DeleteOptions'
        ``gracePeriodSeconds``: how long a pod's containers get to stop (None: the
        pod's own terminationGracePeriodSeconds)."""
        options = None if grace_seconds is None else {
            "apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": grace_seconds}
        return self._json("DELETE", kind.item(namespace, name), options)

    def watch_objects(self, kind: Kind, namespace: str | None, since: str, *,
                      labels: str | None = None, table: bool = False
                      ) -> Iterator[dict[str, Any]]:
        """The events (``{"type": ..., "object": ...}``) of the objects a list would give,
        changed after the list's resourceVersion ``since``, as the daemon commits them;
        with ``table``, each object is a one-row Table. Ends when the daemon ends it."""
        params = {key: value for key, value in
                  (("watch", "1"), ("resourceVersion", since), ("labelSelector", labels))
                  if value}
        headers = {"Accept": TABLE_ACCEPT} if table else None
        with self._transport_errors(), self._http.stream(
                "GET", kind.collection(namespace), params=params, headers=headers,
                timeout=_timeout(_TIMEOUT)) as response:
            if response.is_error:
                response.read()
                self._check(response, self._payload(response))
            for line in response.iter_lines():
                if line.strip():
                    yield json.loads(line)

    def kubeconfig(self) -> dict[str, Any]:
        """A kubeconfig for the daemon's ``--kube-api`` listener (its address and token)."""
        return self._json("GET", "/volfs/v1/kubeconfig")[0]

    def _json(
        self, method: str, path: str, body: dict[str, Any] | None = None, *,
        params: dict[str, str] | None = None, accept: str | None = None,
    ) -> tuple[dict[str, Any], list[str]]:
        response = self._send(method, path, body, params=params, accept=accept)
        payload = self._payload(response)
        self._check(response, payload)
        return payload, _warnings(response)

    @staticmethod
    def _payload(response: httpx.Response) -> dict[str, Any]:
        try:
            payload = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            payload = None
        if not isinstance(payload, dict):
            text = " ".join(response.text.split())[:200]
            raise ApiError(
                response.status_code,
                {"message": f"unexpected answer (HTTP {response.status_code}): {text}"},
            )
        return payload

    @staticmethod
    def _check(response: httpx.Response, payload: dict[str, Any]) -> None:
        if response.is_error or payload.get("kind") == "Status":
            raise ApiError(response.status_code, payload)

    def _send(self, method: str, path: str, body: dict[str, Any] | None, *,
              params: dict[str, str] | None = None,
              accept: str | None = None) -> httpx.Response:
        timeout = _timeout(_GET_TIMEOUT if method == "GET" else _TIMEOUT)
        headers = {"Accept": accept} if accept else None
        with self._transport_errors():
            return self._http.request(method, path, json=body, params=params,
                                      headers=headers, timeout=timeout)

    @contextlib.contextmanager
    def _transport_errors(self) -> Iterator[None]:
        """httpx's failures as this module's errors, each in one line."""
        import httpx  # loaded by __init__ already

        try:
            yield
        except httpx.ConnectError as exc:
            raise self._unreachable(exc) from exc
        except httpx.TimeoutException as exc:
            raise ClientError(
                f"the volfs daemon on {self.socket_path} did not answer in time"
            ) from exc
        except httpx.TransportError as exc:
            raise ClientError(
                f"lost the connection to the volfs daemon on {self.socket_path}: {exc}"
            ) from exc

    def _unreachable(self, exc: httpx.ConnectError) -> DaemonUnreachable:
        cause: BaseException | None = exc
        while cause is not None:
            if isinstance(cause, PermissionError):
                return DaemonUnreachable(
                    f"permission denied on {self.socket_path}: the volfs control socket "
                    "is root-only; run this with sudo"
                )
            cause = cause.__cause__ or cause.__context__
        return DaemonUnreachable(
            f"volfs daemon is not running (no answer on {self.socket_path}); "
            "start it with 'sudo scripts/run' or 'volfs serve'"
        )


def _timeout(seconds: tuple[float, float, float | None]) -> httpx.Timeout:
    import httpx

    total, connect, read = seconds
    return httpx.Timeout(total, connect=connect, read=read)


def _ns(namespace: str) -> str:
    return f"/api/v1/namespaces/{quote(namespace, safe='')}"


def _pod(namespace: str, name: str) -> str:
    return f"{_ns(namespace)}/pods/{quote(name, safe='')}"


def _warnings(response: httpx.Response) -> list[str]:
    """The texts of the ``Warning: 299 - "text"`` headers, unescaped."""
    texts = []
    for header in response.headers.get_list("warning"):
        match = _WARNING.match(header)
        text = match.group(1) if match else header
        texts.append(re.sub(r"\\(.)", r"\1", text) if match else text)
    return texts
