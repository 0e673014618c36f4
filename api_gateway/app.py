"""Building the gateway's WSGI application.

``create_app`` takes everything the gateway talks to: the config, a publisher
(``common.bus.Publisher`` or a test stub), a clock and optionally the limiter of
failed authentications. The caller has already opened the database with
``common.db.open_and_migrate``. The scope each route needs comes from the
OpenAPI document (``api_gateway/openapi.yaml``).
"""
from __future__ import annotations

import time
from collections.abc import Callable

import falcon
import falcon.media

from api_gateway import encoding, errors
from api_gateway.agents import AgentCollection, AgentItem
from api_gateway.auth import Authentication
from api_gateway.changefeed import ChangeFeed
from api_gateway.encoding import Compression
from api_gateway.events import EventPublisher, EventSender
from api_gateway.health import Health
from api_gateway.jobtypes import JobTypeCollection, JobTypeItem
from api_gateway.metrics import MetricsEndpoint, RequestMetrics
from api_gateway.middleware import BodyLimit, DatabaseConnection
from api_gateway.openapi import DocsPage, OpenAPIDocument, load_document, route_scopes
from api_gateway.preview import TaskPreview
from api_gateway.ratelimit import FailureLimiter
from api_gateway.session import SessionResource
from api_gateway.stream import EventStream
from api_gateway.summary import Summary
from api_gateway.tasks import (
    TaskBlocklist,
    TaskChunk,
    TaskChunks,
    TaskCollection,
    TaskItem,
    TaskRetryResource,
)
from api_gateway.tokens import TokenCollection, TokenItem
from api_gateway.ui import Root, UIPages
from api_gateway.workers import WorkerAttempts, WorkerCollection, WorkerItem
from common.bus import Bus
from common.config import Config

# Ids in paths: anything that is not a positive 64-bit integer matches no route (404).
ID = "int(min=1, max=9223372036854775807)"


def create_app(config: Config, publisher: EventPublisher,
               clock: Callable[[], float] = time.time,
               limiter: FailureLimiter | None = None, feed: ChangeFeed | None = None) -> falcon.App:
    if limiter is None:
        limiter = FailureLimiter(config.auth_failure_rate_per_s, config.auth_failure_burst)
    scopes = route_scopes(load_document())
    if config.metrics_public:
        scopes[("/metrics", "GET")] = None
    authentication = Authentication(scopes, config.admin_token, limiter, clock)
    # Order matters: timing first (it sees every answer), compression next (answers pass through
    # it on their way out just before timing), the size check, then the connection authentication needs.
    app = falcon.App(middleware=[RequestMetrics(), Compression(), BodyLimit(config.max_body_bytes),
                                 DatabaseConnection(), authentication])
    app.req_options.strip_url_path_trailing_slash = True
    # ASCII-only JSON: any text the database holds can be sent.
    json_handler = falcon.media.JSONHandler(dumps=encoding.dumps)
    app.resp_options.media_handlers[falcon.MEDIA_JSON] = json_handler
    errors.install(app)

    events = EventSender(publisher)
    app.add_route("/tasks", TaskCollection(config, events, clock))
    app.add_route(f"/tasks/{{task_id:{ID}}}", TaskItem(events))
    app.add_route(f"/tasks/{{task_id:{ID}}}/chunks", TaskChunks())
    app.add_route(f"/tasks/{{task_id:{ID}}}/blocklist", TaskBlocklist(events))
    app.add_route(f"/tasks/{{task_id:{ID}}}/preview", TaskPreview(config))
    app.add_route("/jobtypes", JobTypeCollection(config))
    app.add_route("/jobtypes/{name}", JobTypeItem(config))
    app.add_route("/workers", WorkerCollection(clock, config.api_cache_s))
    app.add_route(f"/workers/{{worker_id:{ID}}}", WorkerItem(events))
    app.add_route("/tokens", TokenCollection(clock))
    app.add_route(f"/tokens/{{token_id:{ID}}}", TokenItem(clock))
    app.add_route(f"/tasks/{{task_id:{ID}}}/chunks/{{chunk_id:{ID}}}", TaskChunk())
    app.add_route(f"/tasks/{{task_id:{ID}}}/retry", TaskRetryResource(events))
    app.add_route(f"/workers/{{worker_id:{ID}}}/attempts", WorkerAttempts())
    app.add_route("/summary", Summary(clock))
    app.add_route("/session", SessionResource(config.admin_token, limiter, clock))
    app.add_route("/events", EventStream(feed or ChangeFeed(Bus(config)), config.event_streams_per_process))
    app.add_route("/", Root())
    ui = UIPages()
    app.add_route("/ui", ui)
    app.add_route("/ui/{path:path}", ui)
    app.add_route("/agents", AgentCollection(clock))
    app.add_route("/agents/{name}", AgentItem(clock))
    app.add_route("/health", Health(events, config.namespace, clock))
    app.add_route("/metrics", MetricsEndpoint())
    app.add_route("/openapi.json", OpenAPIDocument())
    app.add_route("/docs", DocsPage())
    return app
