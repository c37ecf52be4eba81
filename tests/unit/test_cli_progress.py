"""What the CLI shows while it waits for a long delete: a line redrawn on a terminal,
plain lines in a pipe, and the request's own result (or error) at the end. The looks
are counted, not timed: the request ends once the third look has been shown."""

from __future__ import annotations

import io
import threading
from typing import Any

import pytest

from volfs.cli.describe import describe_volume
from volfs.cli.progress import ProgressView, wait_showing


def pod(done: int | None) -> dict[str, Any]:
    operation = None if done is None else {
        "action": "Deleting volume scratch", "done": done, "total": None,
        "unit": "entries", "ratePerSecond": 1000.0}
    return {"metadata": {"name": "big"}, "status": {"operation": operation}}


class Request:
    """A request that ends after ``looks`` looks at the pod, each answered by ``answers``."""

    def __init__(self, answers: list[dict[str, Any] | None], result: Any = "done",
                 error: Exception | None = None) -> None:
        self.answers = answers
        self.looked = 0
        self.result, self.error = result, error
        self.enough = threading.Event()

    def look(self) -> dict[str, Any] | None:
        answer = self.answers[min(self.looked, len(self.answers) - 1)]
        self.looked += 1
        if self.looked >= len(self.answers):
            self.enough.set()
        return answer

    def call(self) -> Any:
        self.enough.wait(30)
        if self.error is not None:
            raise self.error
        return self.result


@pytest.mark.timeout(30)
def test_a_pipe_gets_a_line_per_change_then_the_result() -> None:
    out = io.StringIO()
    request = Request([pod(None), pod(1000), pod(1000), pod(2500)])
    view = ProgressView(out, tty=False, interval=0.01)
    assert wait_showing(request.call, request.look, view, "pod default/big") == "done"
    view.say("pod default/big", "Deleted volume scratch: 3,000 entries in 2.0s")
    lines = out.getvalue().splitlines()
    assert lines[:2] == ["pod default/big: deleting volume scratch: 1,000 entries (1,000/s)",
                         "pod default/big: deleting volume scratch: 2,500 entries (1,000/s)"]
    assert lines[-1] == "pod default/big: deleted volume scratch: 3,000 entries in 2.0s"
    assert "\r" not in out.getvalue()


@pytest.mark.timeout(30)
def test_a_terminal_gets_one_line_redrawn_and_ended() -> None:
    out = io.StringIO()
    request = Request([pod(10), pod(20)])
    view = ProgressView(out, tty=True, interval=0.01)
    wait_showing(request.call, request.look, view, "pod default/big")
    text = out.getvalue()
    assert text.startswith("\rpod default/big: deleting volume scratch: 10 entries")
    assert "\rpod default/big: deleting volume scratch: 20 entries (1,000/s)\x1b[K" in text
    assert text.endswith("\n") and text.count("\n") == 1  # the line is left, then ended


@pytest.mark.timeout(30)
def test_the_request_s_error_is_raised_and_a_gone_object_shows_nothing() -> None:
    out = io.StringIO()
    request = Request([None, None], error=ValueError("refused"))
    with pytest.raises(ValueError, match="refused"):
        wait_showing(request.call, request.look, ProgressView(out, tty=False, interval=0.01),
                     "pod default/big")
    assert out.getvalue() == ""


def test_describe_shows_the_work_under_way_on_a_volume() -> None:
    pv: dict[str, Any] = {
        "metadata": {"name": "r"}, "spec": {"nfs": {"server": "s", "path": "/x"}},
        "status": {"phase": "Released", "operation": {
            "action": "Recycling volume r", "done": 1234, "total": None,
            "unit": "entries", "ratePerSecond": 617.0}}}
    lines = [" ".join(line.split()) for line in describe_volume(pv).splitlines()]
    assert "Operation: Recycling volume r: 1,234 entries (617/s)" in lines
    del pv["status"]["operation"]
    assert not any(line.startswith("Operation:") for line in
                   describe_volume(pv).splitlines())
