"""The OpenAPI document (``openapi.yaml`` beside this file): loading, serving and rendering.

``/openapi.json`` serves it as JSON; ``/docs`` renders it into one
self-contained HTML page on the server (no scripts, no CDN: a farm's browsers
may have no Internet). ``route_scopes`` reads the scope each operation needs.
"""
from __future__ import annotations

import functools
import html
import json
from pathlib import Path
from typing import Any

import falcon
import yaml

DOCUMENT = Path(__file__).with_name("openapi.yaml")
METHODS = ("get", "post", "put", "patch", "delete")
SECURITY_SCHEME = "bearerAuth"


@functools.cache
def load_document() -> dict[str, Any]:
    with DOCUMENT.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """Every ``(path, METHOD, operation)`` in the document, in its order."""
    return [(path, method.upper(), item[method])
            for path, item in doc["paths"].items() for method in METHODS if method in item]


def route_scopes(doc: dict[str, Any]) -> dict[tuple[str, str], str | None]:
    """``(path, METHOD) -> scope`` from each operation's ``security``; None means public."""
    scopes: dict[tuple[str, str], str | None] = {}
    for path, method, operation in operations(doc):
        security = operation.get("security", doc.get("security", []))
        scopes[(path, method)] = security[0][SECURITY_SCHEME][0] if security else None
    return scopes


class OpenAPIDocument:
    """``/openapi.json``."""

    opens_database = False

    def __init__(self) -> None:
        self.body = json.dumps(load_document(), separators=(",", ":")).encode()

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.data = self.body
        resp.content_type = falcon.MEDIA_JSON


class DocsPage:
    """``/docs``: the document as readable HTML."""

    opens_database = False

    def __init__(self) -> None:
        self.body = render_html(load_document()).encode()

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.data = self.body
        resp.content_type = falcon.MEDIA_HTML


# ---------------------------------------------------------------- rendering

_STYLE = """body{font:15px/1.45 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}
h2{border-bottom:1px solid #ccc;margin-top:2.5rem}code,pre{font:13px ui-monospace,monospace}
pre{background:#f5f5f5;padding:.6rem;overflow-x:auto}.op{margin:1.5rem 0;padding:.2rem 1rem;
border-left:4px solid #789}.m{font-weight:bold;text-transform:uppercase;margin-right:.5rem}
.scope{background:#eef;padding:0 .4rem;border-radius:3px}table{border-collapse:collapse}
td,th{border:1px solid #ddd;padding:.2rem .5rem;text-align:left;vertical-align:top}"""


def render_html(doc: dict[str, Any]) -> str:
    info = doc["info"]
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{_e(info['title'])}</title>",
             f"<style>{_STYLE}</style></head><body><h1>{_e(info['title'])} {_e(info['version'])}</h1>",
             f"<pre>{_e(info.get('description', ''))}</pre>",
             "<p>Machine-readable: <a href='/openapi.json'>/openapi.json</a> (OpenAPI 3.1).</p>",
             "<h2>Operations</h2>"]
    parts += [_operation(doc, path, method, op) for path, method, op in operations(doc)]
    parts.append("<h2>Schemas</h2>")
    for name, schema in doc["components"]["schemas"].items():
        parts.append(f"<h3 id='schema-{_e(name)}'>{_e(name)}</h3><pre>{_e(_json(schema))}</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _operation(doc: dict[str, Any], path: str, method: str, op: dict[str, Any]) -> str:
    security = op.get("security", [])
    scope = f"<span class='scope'>scope: {_e(security[0][SECURITY_SCHEME][0])}</span>" if security \
        else "<span class='scope'>no token</span>"
    out = [f"<div class='op'><h3><span class='m'>{method}</span><code>{_e(path)}</code></h3>",
           f"<p>{_e(op.get('summary', ''))} {scope}</p>"]
    if op.get("description"):
        out.append(f"<p>{_e(op['description'])}</p>")
    params = doc["paths"][path].get("parameters", []) + op.get("parameters", [])
    if params:
        rows = "".join(f"<tr><td><code>{_e(p['name'])}</code></td><td>{_e(p['in'])}</td>"
                       f"<td><code>{_e(_json(p['schema']))}</code></td></tr>"
                       for p in (_deref(doc, p) for p in params))
        out.append(f"<table><tr><th>parameter</th><th>in</th><th>schema</th></tr>{rows}</table>")
    body = op.get("requestBody", {}).get("content", {})
    for media, content in body.items():
        out.append(f"<p>Body <code>{_e(media)}</code>: {_ref_link(content['schema'])}</p>")
    rows = "".join(f"<tr><td>{_e(status)}</td><td>{_e(_deref(doc, r).get('description', ''))}</td></tr>"
                   for status, r in op["responses"].items())
    out.append(f"<table><tr><th>status</th><th>meaning</th></tr>{rows}</table></div>")
    return "".join(out)


def _deref(doc: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if not ref:
        return node
    target: Any = doc
    for part in ref.lstrip("#/").split("/"):
        target = target[part]
    return target


def _ref_link(schema: dict[str, Any]) -> str:
    ref = schema.get("$ref", "")
    if ref.startswith("#/components/schemas/"):
        name = ref.rsplit("/", 1)[1]
        return f"<a href='#schema-{_e(name)}'>{_e(name)}</a>"
    return f"<code>{_e(_json(schema))}</code>"


def _json(value: Any) -> str:
    return json.dumps(value, indent=2)


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)
