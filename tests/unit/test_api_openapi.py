"""The OpenAPI document is the contract: it lists exactly the app's routes and is served and rendered."""
from __future__ import annotations

import re

import falcon.inspect
import pytest
from falcon import testing

from api_gateway.app import create_app
from api_gateway.auth import plain_template
from api_gateway.openapi import load_document, operations, route_scopes
from common import auth
from common.config import load_config


class NullPublisher:
    def event(self, message) -> None:
        pass


@pytest.fixture(scope="module")
def app():
    return create_app(load_config({}), NullPublisher())


def app_operations(app) -> set[tuple[str, str]]:
    return {(plain_template(route.path), method.method)
            for route in falcon.inspect.inspect_routes(app)
            for method in route.methods if not method.internal}


def test_every_route_of_the_app_is_in_the_document_and_every_documented_route_is_in_the_app(app):
    documented = {(path, method) for path, method, _ in operations(load_document())}
    assert app_operations(app) == documented


def test_every_operation_names_one_scope_or_is_explicitly_public():
    doc = load_document()
    assert doc["openapi"].startswith("3.1")
    for path, method, operation in operations(doc):
        assert "security" in operation, f"{method} {path} must say which scope it needs"
        security = operation["security"]
        assert security == [] or (len(security) == 1 and len(security[0]["bearerAuth"]) == 1
                                  and security[0]["bearerAuth"][0] in auth.SCOPES), (path, method)
        assert operation.get("operationId") and "default" in operation["responses"], (path, method)
    public = {key for key, scope in route_scopes(doc).items() if scope is None}
    # The web UI's shell and files hold no farm data; logging in is how a session starts.
    assert public == {("/health", "GET"), ("/openapi.json", "GET"), ("/docs", "GET"), ("/session", "POST"),
                      ("/", "GET"), ("/ui", "GET"), ("/ui/{path}", "GET")}


def test_every_reference_in_the_document_resolves():
    doc = load_document()
    text = repr(doc)
    for ref in set(re.findall(r"'\$ref': '#/([^']+)'", text)):
        node = doc
        for part in ref.split("/"):
            assert part in node, f"unresolved $ref #/{ref}"
            node = node[part]


def test_the_document_is_served_as_json_and_equals_the_hand_written_source(app):
    result = testing.TestClient(app).simulate_get("/openapi.json")
    assert result.status_code == 200 and result.headers["content-type"] == "application/json"
    assert result.json == load_document()


def test_the_docs_page_is_self_contained_html_listing_every_operation(app):
    result = testing.TestClient(app).simulate_get("/docs")
    assert result.status_code == 200 and result.headers["content-type"].startswith("text/html")
    page = result.text
    for path, method, _ in operations(load_document()):
        assert f"<code>{path}</code>" in page and method in page
    # Nothing to fetch from elsewhere: no scripts, stylesheets or images from any host.
    assert "<script" not in page and "src=" not in page and "http://" not in page and "https://" not in page
