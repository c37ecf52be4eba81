"""The daemon's log formats: text for people, one JSON object per line for machines,
both with the objects an event concerns as fields; a bug's traceback once."""

from __future__ import annotations

import datetime
import json
import logging
import sys

import pytest

from volfs.logs import JsonFormatter, TextFormatter, fields, object_fields, unexpected

POD = {"kind": "Pod", "metadata": {"name": "web", "namespace": "default", "uid": "u-1"}}


def _record(message: str, *args: object, extra: dict[str, object] | None = None,
            exc_info: object = None, name: str = "volfs.lifecycle.pods") -> logging.LogRecord:
    logger = logging.getLogger(name)
    return logger.makeRecord(name, logging.INFO, __file__, 1, message, args,
                             exc_info, extra=extra)  # type: ignore[arg-type]


def test_text_is_one_line_with_the_fields_after_the_message() -> None:
    record = _record("pod %s created", "default/web",
                     extra=fields(**object_fields(POD), waits="claim data: not bound"))
    assert TextFormatter().format(record) == (
        'volfs: INFO lifecycle.pods: pod default/web created pod=default/web '
        'namespace=default uid=u-1 waits="claim data: not bound"')


def test_json_has_time_level_logger_message_and_fields() -> None:
    record = _record("pod %s created", "default/web", extra=fields(
        **object_fields(POD), volume="scratch", container=None))
    entry = json.loads(JsonFormatter().format(record))
    assert entry.pop("time").endswith("Z")
    assert entry == {"level": "INFO", "logger": "volfs.lifecycle.pods",
                     "message": "pod default/web created", "pod": "default/web",
                     "namespace": "default", "uid": "u-1", "volume": "scratch"}
    stamp = json.loads(JsonFormatter().format(record))["time"]
    assert datetime.datetime.fromisoformat(stamp).tzinfo is not None  # RFC 3339


def test_a_field_never_hides_the_fixed_keys() -> None:
    record = _record("hello", extra=fields(message="not this", level="nor this"))
    entry = json.loads(JsonFormatter().format(record))
    assert (entry["message"], entry["level"]) == ("hello", "INFO")


def test_a_traceback_stays_on_the_json_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = _record("failed", exc_info=sys.exc_info())
    text = JsonFormatter().format(record)
    assert "\n" not in text
    assert "ValueError: boom" in json.loads(text)["traceback"]


def test_object_fields_by_kind() -> None:
    claim = {"kind": "PersistentVolumeClaim", "metadata": {"name": "data", "namespace": "ns"}}
    assert object_fields(claim) == {"claim": "ns/data", "namespace": "ns"}
    assert object_fields({"kind": "PersistentVolume", "metadata": {"name": "pv1"}}) == {
        "pv": "pv1"}
    assert object_fields({"kind": "StorageClass", "metadata": {"name": "nfs"}}) == {
        "storageclass": "nfs"}
    # A bound pair names each other: a claim its volume, a volume its claim.
    bound = dict(claim, spec={"volumeName": "pv1"})
    assert object_fields(bound) == {"claim": "ns/data", "namespace": "ns", "pv": "pv1"}
    volume = {"kind": "PersistentVolume", "metadata": {"name": "pv1"},
              "spec": {"claimRef": {"namespace": "ns", "name": "data"}}}
    assert object_fields(volume) == {"pv": "pv1", "claim": "ns/data"}


def test_a_bugs_traceback_is_logged_once_per_place(caplog: pytest.LogCaptureFixture) -> None:
    class Bug(Exception):  # a type of this test's own: never logged before
        pass

    log = logging.getLogger("volfs.test")
    with caplog.at_level(logging.ERROR, logger="volfs.test"):
        for _ in range(3):
            try:
                raise Bug("oops")
            except Bug:
                unexpected(log, "handling %s failed", "x", extra=fields(pod="default/web"))
    assert [bool(r.exc_info) for r in caplog.records] == [True, False, False]
    assert caplog.records[0].getMessage() == "handling x failed: Bug: oops"
    assert "traceback was logged before" in caplog.records[2].getMessage()
