"""The web UI: a static single-page app (``api_gateway/ui/static``) over the public REST API and ``/events``.

Every page URL (``/ui/``, ``/ui/tasks``, ``/ui/tasks/12``, ``/ui/workers``,
``/ui/workers/3``) answers with the same shell; its script reads the address
and draws the page. The shell and its assets are public (they hold no farm
data); the data comes from the API with the session cookie. Every answer here
carries a strict Content-Security-Policy: scripts and styles only from this
origin, none inline.
"""
from __future__ import annotations

import mimetypes
import re
from pathlib import Path

import falcon

STATIC = Path(__file__).with_name("ui") / "static"
CSP = ("default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'")
PAGES = re.compile(r"^(|login|tasks|tasks/\d{1,19}|workers|workers/\d{1,19})$")
TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
         ".svg": "image/svg+xml", ".html": "text/html; charset=utf-8"}


def secure_headers(resp: falcon.Response) -> None:
    resp.set_header("Content-Security-Policy", CSP)
    resp.set_header("X-Content-Type-Options", "nosniff")
    resp.set_header("Referrer-Policy", "no-referrer")  # a login link's code never leaves in a Referer
    resp.set_header("X-Frame-Options", "DENY")


def _read_assets() -> dict[str, bytes]:
    return {path.relative_to(STATIC).as_posix(): path.read_bytes()
            for path in STATIC.rglob("*") if path.is_file()}


class Root:
    """``/``: the dashboard is the front page."""

    opens_database = False

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        secure_headers(resp)
        raise falcon.HTTPFound("/ui/")


class UIPages:
    """``/ui`` and ``/ui/{path}``: the shell for page addresses, the files under ``static/``."""

    opens_database = False

    def __init__(self) -> None:
        self.assets = _read_assets()  # read once: a handful of small files

    def on_get(self, req: falcon.Request, resp: falcon.Response, path: str = "") -> None:
        secure_headers(resp)
        if path.startswith("static/"):
            name = path[len("static/"):]
            body = self.assets.get(name)
            if body is None:
                raise falcon.HTTPNotFound(description=f"no UI file {name[:200]!r}")
            guessed = mimetypes.guess_type(name)[0]
            resp.content_type = TYPES.get(Path(name).suffix) or guessed or "application/octet-stream"
            resp.data = body
            resp.cache_control = ["no-cache"]
            return
        if not PAGES.match(path):
            raise falcon.HTTPNotFound(description=f"no UI page /ui/{path[:200]}")
        resp.content_type = TYPES[".html"]
        resp.data = self.assets["index.html"]
        resp.cache_control = ["no-store"]
