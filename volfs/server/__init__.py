"""The control API: a slice of the Kubernetes REST API over a unix socket."""

from volfs.server.app import create_app
from volfs.server.serve import SocketInUse, serve_unix

__all__ = ["SocketInUse", "create_app", "serve_unix"]
