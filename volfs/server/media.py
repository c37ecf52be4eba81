"""Content negotiation: plain JSON, or a ``meta.k8s.io`` Table when the client asks for one.

>>> negotiate("application/json;as=Table;v=v1;g=meta.k8s.io,application/json", tables=True)
Media(table_version='v1')
>>> negotiate("application/json;as=Table;v=v1;g=meta.k8s.io,application/json", tables=False)
Media(table_version=None)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.responses import JSONResponse

from volfs.server import status as st

JSON = "application/json"
TABLE_VERSIONS = ("v1", "v1beta1")
ACCEPTED = ", ".join([JSON] + [f"{JSON};as=Table;v={v};g=meta.k8s.io" for v in TABLE_VERSIONS])


@dataclass(frozen=True)
class Media:
    """What to answer with: a plain object (``table_version`` None) or a Table."""

    table_version: str | None = None

    @property
    def content_type(self) -> str:
        if self.table_version is None:
            return JSON
        return f"{JSON};as=Table;v={self.table_version};g=meta.k8s.io"


def negotiate(accept: str | None, *, tables: bool) -> Media:
    """The first media range of ``accept`` (by ``q``, then order) volfs can serve.

    Tables are offered only where ``tables`` is true (get and list of a resource).
    Aggregated discovery (``as=APIGroupDiscoveryList``), protobuf and the like are
    passed over; a header naming nothing volfs serves is a 406.

    Raises:
        StatusError: 406 NotAcceptable.
    """
    if not accept or not accept.strip():
        return Media()
    ranges = []
    for position, item in enumerate(accept.split(",")):
        media_type, *params = [p.strip() for p in item.split(";")]
        options = {}
        for param in params:
            key, _, value = param.partition("=")
            options[key.strip().lower()] = value.strip().strip('"')
        try:
            quality = float(options.get("q", "1"))
        except ValueError:
            quality = 1.0
        if quality > 0:
            ranges.append((-quality, position, media_type.lower(), options))
    for _, _, media_type, options in sorted(ranges):
        if media_type not in (JSON, "application/*", "*/*"):
            continue
        shape = options.get("as")
        if shape is None:
            return Media()
        if (tables and shape == "Table" and options.get("g") == "meta.k8s.io"
                and options.get("v") in TABLE_VERSIONS):
            return Media(table_version=options["v"])
    raise st.StatusError(st.status(
        "NotAcceptable", f"only the following media types are accepted: {ACCEPTED}"))


class FastJSONResponse(JSONResponse):
    """A JSON answer encoded by orjson: the same compact UTF-8 as Starlette's, several
    times faster for a list of a thousand pods. What orjson cannot encode (an integer
    beyond 64 bits, a key that is not a string) is encoded as Starlette encodes it."""

    def render(self, content: Any) -> bytes:
        try:
            return orjson.dumps(content)
        except TypeError:
            return json.dumps(content, ensure_ascii=False, allow_nan=False, indent=None,
                              separators=(",", ":")).encode("utf-8")

