"""Reading request bodies (JSON or form-encoded) and typed fields out of them.

The original Manager clients post forms, where every value is a string; newer
clients post JSON, where an integer must be a real integer. ``Body`` hides the
difference from the resources: ``body.integer("priority", 0, 100)`` accepts
``"7"`` from a form and ``7`` from JSON, and refuses ``"7"`` in JSON.
"""
from __future__ import annotations

import dataclasses
import json
import re
import urllib.parse
from collections.abc import Iterable
from typing import Any

import falcon

from api_gateway.errors import PayloadTooLarge, UnsupportedMediaType
from common.errors import ValidationError

MAX_BODY_BYTES = 1024 * 1024  # default of config.max_body_bytes
MAX_FORM_FIELDS = 100
JSON_TYPE = "application/json"
FORM_TYPE = "application/x-www-form-urlencoded"
_FORM_INT = re.compile(r"^-?[0-9]{1,18}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclasses.dataclass(frozen=True)
class Body:
    """The top-level fields of a request body; ``form`` says they came from a form."""

    fields: dict[str, Any]
    form: bool = False

    def get(self, name: str) -> Any:
        """The value of ``name``; a JSON null or an empty form value count as absent."""
        value = self.fields.get(name)
        if self.form and value == "":
            return None
        return value

    def reject_unknown(self, known: Iterable[str]) -> None:
        allowed = set(known)
        for key in self.fields:
            if key not in allowed:
                raise ValidationError(key, "is not a known field")

    def integer(self, name: str, lo: int, hi: int) -> int | None:
        """An integer in ``lo..hi``, or None when absent."""
        value = self.get(name)
        if value is None:
            return None
        if self.form and isinstance(value, str):
            if not _FORM_INT.match(value):
                raise ValidationError(name, "must be an integer")
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError(name, "must be an integer")
        if not lo <= value <= hi:
            raise ValidationError(name, f"must be between {lo} and {hi}")
        return value

    def string(self, name: str, max_chars: int, pattern: re.Pattern[str] | None = None) -> str | None:
        """A one-line string, or None when absent."""
        value = self.get(name)
        return None if value is None else check_text(name, value, max_chars, pattern)


def check_text(name: str, value: Any, max_chars: int, pattern: re.Pattern[str] | None = None) -> str:
    """A one-line string of 1..max_chars characters, optionally matching ``pattern``."""
    if not isinstance(value, str):
        raise ValidationError(name, "must be a string")
    if not value or len(value) > max_chars:
        raise ValidationError(name, f"must be 1 to {max_chars} characters")
    if _CONTROL.search(value):
        raise ValidationError(name, "must not contain control characters")
    if pattern is not None and not pattern.match(value):
        raise ValidationError(name, f"must match {pattern.pattern}")
    return value


def body_limit(req: falcon.Request) -> int:
    """The largest body this request may carry (``BodyLimit`` middleware sets it from the config)."""
    return int(req.context.get("max_body_bytes", MAX_BODY_BYTES))


def read_body(req: falcon.Request) -> Body:
    """Read and parse the body: JSON object or form; enforce size and content type."""
    limit = body_limit(req)
    length = req.content_length
    if length is not None and length > limit:
        raise PayloadTooLarge(f"the body is larger than {limit} bytes")
    raw = req.bounded_stream.read(limit + 1)
    if len(raw) > limit:
        raise PayloadTooLarge(f"the body is larger than {limit} bytes")
    media_type = (req.content_type or "").split(";", 1)[0].strip().lower()
    if not raw.strip() and media_type in ("", JSON_TYPE, FORM_TYPE):
        return Body({}, form=media_type == FORM_TYPE)
    if media_type == JSON_TYPE:
        value = parse_json(raw, "body")
        if not isinstance(value, dict):
            raise ValidationError("body", "must be a JSON object")
        return Body(value)
    if media_type == FORM_TYPE:
        return Body(parse_form(raw), form=True)
    raise UnsupportedMediaType(
        f"Content-Type must be {JSON_TYPE} or {FORM_TYPE}, not {media_type[:100] or 'missing'}")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse_json(raw: bytes | str, field: str) -> Any:
    """Parse JSON text; every way it can be wrong is a ValidationError naming ``field``."""
    try:
        value = json.loads(raw, parse_constant=_refuse_constant)
        # Lone surrogates ("\ud800") parse but cannot be stored or encoded as UTF-8.
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except RecursionError:
        raise ValidationError(field, "is nested too deeply") from None
    except UnicodeError:
        raise ValidationError(field, "is not valid UTF-8 text") from None
    except ValueError as exc:
        raise ValidationError(field, f"is not valid JSON ({str(exc)[:200]})") from None
    return value


def parse_form(raw: bytes) -> dict[str, str]:
    try:
        text = raw.decode("utf-8")
        pairs = urllib.parse.parse_qsl(
            text, keep_blank_values=True, errors="strict", max_num_fields=MAX_FORM_FIELDS)
    except UnicodeError:
        raise ValidationError("body", "is not valid UTF-8 text") from None
    except ValueError:
        raise ValidationError("body", f"has more than {MAX_FORM_FIELDS} fields") from None
    fields: dict[str, str] = {}
    for key, value in pairs:
        if key in fields:
            raise ValidationError(key, "is given more than once")
        fields[key] = value
    return fields


def query_int(req: falcon.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = req.get_param(name)
    if raw is None or raw == "":
        return default
    if not _FORM_INT.match(raw):
        raise ValidationError(name, "must be an integer")
    value = int(raw)
    if not lo <= value <= hi:
        raise ValidationError(name, f"must be between {lo} and {hi}")
    return value
