"""How answers are written: compact ASCII JSON, and gzip for large ones to clients that accept it.

``GET /workers`` is half a megabyte for 1,000 workers and a page of tasks
about 20 KB; both are mostly repeated keys, and shrink 10-30x. Moving the
bytes cost the gateway (and its clients) more than producing them, and over a
studio's VPN the difference is seconds. A client that sends no
``Accept-Encoding: gzip`` (or ``gzip;q=0``) gets the plain body, as before.

Two ways in, one format: the ``Compression`` middleware compresses a body
when the answer is built, and a memoised answer (``Encoded``) carries its
compressed form, made once per memo refresh instead of once per request.
"""
from __future__ import annotations

import dataclasses
import gzip
import json
from typing import Any

import falcon
import msgspec

MIN_BYTES = 4096  # below this, a compressed body saves less than it costs
# Per request, level 1: 3x faster than 6 and within 15% of its size on our JSON. A memoised body is
# compressed once per refresh, so it takes 6, which also unpacks 2-3x faster for every client.
GZIP_LEVEL = 1
MEMO_GZIP_LEVEL = 6


_encode = msgspec.json.Encoder().encode


def dumps(media: Any) -> bytes:
    """Compact JSON with every non-ASCII character escaped, as docs/api.md promises.

    msgspec writes a page of tasks 8x faster than the standard library, but
    writes non-ASCII text as UTF-8 (and refuses lone surrogates): an answer
    holding any is written again by the standard library, which escapes it.
    """
    try:
        data: bytes | None = _encode(media)
    except (TypeError, ValueError, msgspec.EncodeError):
        data = None  # a lone surrogate, or a type msgspec does not write
    if data is not None and data.isascii():
        return data
    return json.dumps(media, separators=(",", ":")).encode()


def accepts_gzip(header: str | None) -> bool:
    """Whether an ``Accept-Encoding`` header admits gzip: listed (or ``*``) with a weight above 0."""
    weights = dict(_coding(item) for item in (header or "").split(",") if item.strip())
    for name in ("gzip", "x-gzip", "*"):
        if name in weights:
            return weights[name] > 0
    return False


def _coding(item: str) -> tuple[str, float]:
    """``"gzip;q=0.5"`` -> ``("gzip", 0.5)``; a weight that is not a number counts as 0."""
    name, _, params = item.partition(";")
    weight = 1.0
    for param in params.split(";"):
        key, _, value = param.strip().partition("=")
        if key.strip().lower() == "q":
            try:
                weight = float(value)
            except ValueError:
                weight = 0.0
    return name.strip().lower(), weight


def compress(data: bytes, level: int = GZIP_LEVEL) -> bytes:
    return gzip.compress(data, compresslevel=level, mtime=0)


@dataclasses.dataclass(frozen=True)
class Encoded:
    """A JSON body prepared for both kinds of client: as is, and gzip-compressed when it is large."""

    plain: bytes
    gzipped: bytes | None

    @classmethod
    def of(cls, data: bytes) -> Encoded:
        return cls(data, compress(data, MEMO_GZIP_LEVEL) if len(data) >= MIN_BYTES else None)

    def send(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = falcon.MEDIA_JSON
        if self.gzipped is None:
            resp.data = self.plain
            return
        resp.append_header("Vary", "Accept-Encoding")
        if accepts_gzip(req.get_header("Accept-Encoding")):
            resp.set_header("Content-Encoding", "gzip")
            resp.data = self.gzipped
        else:
            resp.data = self.plain


class Compression:
    """Compresses a large JSON answer for a client that accepts gzip (streams are left alone)."""

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: Any,
                         req_succeeded: bool) -> None:
        if resp.stream is not None or resp.get_header("Content-Encoding") is not None:
            return
        if "accept-encoding" in (resp.get_header("Vary") or "").lower():
            return  # the responder chose between its plain and gzipped body already (``Encoded``)
        data = resp.render_body()  # also sets the content type of a media answer
        is_json = (resp.content_type or "").startswith(falcon.MEDIA_JSON)
        if data is None or len(data) < MIN_BYTES or not is_json:
            return
        resp.append_header("Vary", "Accept-Encoding")
        if accepts_gzip(req.get_header("Accept-Encoding")):
            resp.set_header("Content-Encoding", "gzip")
            resp.data = compress(data)
