"""The daemon's log: one line per event, with the objects it concerns as fields.

A log call names its objects with :func:`fields` (``extra=``); the formatter
``--log-format`` chooses writes them after the message (``text``, for people) or
as keys of one JSON object per line (``json``, for machines)::

    log.info("pod %s created", key, extra=fields(pod=key, uid=uid))
    # text: volfs: INFO lifecycle.pods: pod default/web created pod=default/web uid=...
    # json: {"time": "2026-...Z", "level": "INFO", "logger": "volfs.lifecycle.pods",
    #        "message": "pod default/web created", "pod": "default/web", "uid": "..."}

Field names in use: ``pod`` and ``claim`` (``namespace/name``), ``namespace``, ``uid``,
``volume`` (a pod's volume), ``pv``, ``storageclass``, ``container``, ``server`` (an
NFS server), ``reason`` (an event's).

Two formatters of a few lines each, on the standard library: python-json-logger or
structlog would add a dependency (and, for structlog, a second logging API) for what
is one ``json.dumps`` of a dict here.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
from collections.abc import Mapping
from typing import Any

FIELDS = "volfs_fields"  # the LogRecord attribute fields() fills
_PREFIX = "volfs."  # text logs drop it from logger names: every logger here has it


def fields(**values: object) -> dict[str, Any]:
    """``extra=`` for a log call: the objects it concerns; None and "" are left out."""
    return {FIELDS: {key: str(value) for key, value in values.items()
                     if value is not None and value != ""}}


def object_fields(obj: Mapping[str, Any]) -> dict[str, str]:
    """The fields of a Kubernetes object (a pod, claim, PV, class), by its kind."""
    meta = obj.get("metadata") or {}
    name, namespace = str(meta.get("name") or ""), str(meta.get("namespace") or "")
    kind = obj.get("kind")
    if kind == "Pod":
        return {"pod": f"{namespace or 'default'}/{name}", "namespace": namespace or "default",
                "uid": str(meta.get("uid") or "")}
    spec = obj.get("spec") or {}
    if kind == "PersistentVolumeClaim":
        found = {"claim": f"{namespace or 'default'}/{name}", "namespace": namespace or "default"}
        return found | ({"pv": str(spec["volumeName"])} if spec.get("volumeName") else {})
    if kind == "PersistentVolume":
        ref = spec.get("claimRef") or {}
        claim = f"{ref.get('namespace') or 'default'}/{ref['name']}" if ref.get("name") else ""
        return {"pv": name} | ({"claim": claim} if claim else {})
    if kind == "StorageClass":
        return {"storageclass": name}
    return {"object": f"{kind}/{name}"} if kind else {}


def _fields_of(record: logging.LogRecord) -> dict[str, str]:
    return dict(getattr(record, FIELDS, None) or {})


class TextFormatter(logging.Formatter):
    """``volfs: LEVEL logger: message key=value ...`` (a traceback, if any, below)."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        name = record.name.removeprefix(_PREFIX)
        line = f"volfs: {record.levelname} {name}: {record.message}"
        for key, value in _fields_of(record).items():
            shown = json.dumps(value) if not value or any(c in value for c in ' "=') else value
            line += f" {key}={shown}"
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (RFC 3339, UTC), level, logger, message, the
    fields, and ``traceback`` when an exception is logged."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC)
            .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in _fields_of(record).items():
            entry.setdefault(key, value)  # a field never hides the fixed keys
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["traceback"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


# Where unexpected exceptions were logged with their traceback: (logger, exception type,
# file, line where it was raised). Bounded by the number of such places in the code.
_REPORTED: set[tuple[str, str, str, int]] = set()


def unexpected(logger: logging.Logger, message: str, *args: object,
               extra: Mapping[str, Any] | None = None) -> None:
    """Log the exception being handled, a bug: with its traceback the first time it is
    raised at that place, in one line after that (a bug in a hot path must not bury
    the log). ``message`` says what failed; the exception's type and text follow.

    An expected failure (bad input, a server that is down) is logged in one line with
    ``logger.warning``/``error`` instead, never through here.
    """
    exc = sys.exc_info()[1]
    if exc is None:
        logger.error(message, *args, extra=extra)
        return
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = (tb.tb_frame.f_code.co_filename, tb.tb_lineno) if tb is not None else ("", 0)
    key = (logger.name, type(exc).__qualname__, *where)
    first = key not in _REPORTED
    _REPORTED.add(key)
    logger.error(message + ": %s: %s%s", *args, type(exc).__name__, exc,
                 "" if first else " (a bug; its traceback was logged before)",
                 exc_info=first, extra=extra)


FORMATTERS: dict[str, type[logging.Formatter]] = {"text": TextFormatter, "json": JsonFormatter}


def configure(log_format: str, debug: bool = False) -> None:
    """Send every log record (the daemon's, hypercorn's, Python warnings) to stderr
    through the ``log_format`` formatter, one record per line."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(FORMATTERS[log_format]())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    logging.captureWarnings(True)
