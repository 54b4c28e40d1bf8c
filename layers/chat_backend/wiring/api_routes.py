"""Which function serves each route of the WebSocket API and each action of the HTTP fallback."""

from __future__ import annotations

from chat_backend.wiring.functions import FUNCTIONS
from chat_backend.wiring.kinds import Function
from chat_backend.wiring.limits import Rate


def routes() -> dict[str, Function]:
    """Route key -> the function that serves it."""
    return {route: fn for fn in FUNCTIONS for route in fn.routes}


def authorizer_function() -> Function:
    return next(f for f in FUNCTIONS if f.authorizer)


# The HTTP fallback (PROTOCOL.md v1.1 "HTTP fallback"): `POST /v1/<action>` on an HTTP API, for
# clients whose network blocks WebSockets. Every two-way route is served but these, which only make
# sense on a live connection (a subscription, a typing notice, a connection's heartbeat), and the
# `$` routes (API Gateway's own).
WEBSOCKET_ONLY_ROUTES = frozenset({"heartbeat", "typing", "presence"})
# API Gateway HTTP API's payload limit; frames within it still keep the WebSocket's 128 KiB rule
# (the functions' decode_body).
HTTP_MAX_BODY_BYTES = 10 * 1024 * 1024
# The HTTP API stage's throttle (the CDK stack deploys it, the local gateway applies it): HTTP
# clients are the few whose network blocks WebSockets, and they poll; well under the account's
# 10,000 requests a second shared with the WebSocket API.
HTTP_STAGE_THROTTLE = Rate(burst=500, per_s=1000)


def http_routes() -> dict[str, Function]:
    """Action -> the function serving `POST /v1/<action>` on the HTTP API."""
    return {
        route: fn
        for route, fn in routes().items()
        if fn.two_way and not route.startswith("$") and route not in WEBSOCKET_ONLY_ROUTES
    }
