"""The ``volfs`` command line: ``serve`` runs the daemon; ``apply``, ``get``,
``describe`` and ``delete`` talk to it over its control socket."""

from volfs.cli.commands import main

__all__ = ["main"]
