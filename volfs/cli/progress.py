"""Progress while the CLI waits for a long delete.

The daemon answers a pod's DELETE once the pod's volumes are wiped; meanwhile the pod
is Terminating and its ``status.operation`` says how far the wipe is (volfs.lifecycle).
While the request runs, this module looks at the pod now and then and shows that: one
line redrawn on a terminal, a plain line per change otherwise (a pipe, a log). It only
reads; the delete itself is the request's, whatever is shown.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TextIO, TypeVar

from volfs.cli.printers import operation_text

T = TypeVar("T")

# Seconds between two looks at the pod: a terminal redraws often, a log gets fewer lines.
TTY_INTERVAL = 0.25
PLAIN_INTERVAL = 1.0

__all__ = ["ProgressView", "wait_showing"]


class ProgressView:
    """Where progress lines go: ``stream`` (stderr), prefixed by the object's name."""

    def __init__(self, stream: TextIO, tty: bool | None = None,
                 interval: float | None = None) -> None:
        self._stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self.interval = interval or (TTY_INTERVAL if self.tty else PLAIN_INTERVAL)
        self._drawn = False
        self._last: str | None = None

    def show(self, subject: str, text: str) -> None:
        """The work under way now: redraws the line on a terminal, else a new line
        when the text changed."""
        line = f"{subject}: {_lower_first(text)}"
        if self.tty:
            self._stream.write(f"\r{line}\x1b[K")
            self._drawn = True
        elif line != self._last:
            self._stream.write(line + "\n")
        self._last = line
        self._stream.flush()

    def say(self, subject: str, text: str) -> None:
        """A line that stays (how the work ended)."""
        self.end()
        self._stream.write(f"{subject}: {_lower_first(text)}\n")
        self._stream.flush()

    def end(self) -> None:
        """Leave the redrawn line as it is, and go on below it."""
        if self._drawn:
            self._stream.write("\n")
            self._stream.flush()
            self._drawn = False


def wait_showing(call: Callable[[], T], look: Callable[[], Any], view: ProgressView,
                 subject: str) -> T:
    """``call()``'s result (or its exception), showing ``look()``'s ``status.operation``
    every ``view.interval`` until it returns.

    ``call`` runs in a daemon thread, so that Ctrl-C ends the command at once (the
    daemon finishes the work regardless). ``look`` returns the object, or None when it
    cannot be read (it is gone: the work is over).
    """
    outcome: dict[str, Any] = {}
    finished = threading.Event()

    def run() -> None:
        try:
            outcome["result"] = call()
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc
        finally:
            finished.set()

    threading.Thread(target=run, name="volfs-request", daemon=True).start()
    while not finished.wait(view.interval):
        obj = look()
        text = operation_text(((obj or {}).get("status") or {}).get("operation"))
        if text:
            view.show(subject, text)
    view.end()
    if "error" in outcome:
        raise outcome["error"]
    result: T = outcome["result"]
    return result


def _lower_first(text: str) -> str:
    """``Deleting volume x`` → ``deleting volume x``: a clause after ``pod ns/name:``."""
    return text[:1].lower() + text[1:]
