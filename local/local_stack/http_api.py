"""The HTTP fallback's HTTP API (PROTOCOL.md v1.1 "HTTP fallback") on the local gateway's port:
`POST /v1/<action>` for the actions `wiring.http_routes()` serves (another path: 404).

The stage's throttle (wiring.HTTP_STAGE_THROTTLE, what the CDK stack deploys) answers 429 first,
as API Gateway does. The bearer token is verified as API Gateway's JWT authorizer would (here
HS256 with CHAT_JWT_SECRET, the local authorizer's own verification; 401 without a valid one), a
body over the HTTP API's 10 MB is a 413, and the function gets a payload format 2.0 event with
the token's claims in `requestContext.authorizer.jwt.claims`; its response is the HTTP answer.
"""

from __future__ import annotations

import base64
import json
import os
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from chat_backend import wiring
from chat_backend.errors import Unauthorized
from chat_backend.logic.auth import TokenVerifier
from local_stack.api_gateway import ACCOUNT, API_ID, new_id, request_time, route_overhead
from local_stack.invoker import Invoker
from local_stack.stage_throttle import StageThrottle
from local_stack.timing import TimingProfile


class HttpApi:
    def __init__(
        self,
        invoker: Invoker,
        host: str,
        timing: TimingProfile,
        jwt_secret: str | None,
        throttle: wiring.Rate,
    ) -> None:
        self.invoker = invoker
        self.host = host
        self.timing = timing
        self._jwt_secret = jwt_secret  # None: the functions' CHAT_JWT_SECRET, read at the first request
        self._verifier: TokenVerifier | None = None
        self.routes = wiring.http_routes()
        self.throttle = StageThrottle(throttle)

    async def request(self, request: web.Request) -> web.Response:
        fn = self.routes.get(request.match_info["action"])
        if fn is None:
            return web.json_response({"message": "Not Found"}, status=404)
        if not self.throttle.admit():  # the stage's throttle, before anything runs
            return web.json_response({"message": "Too Many Requests"}, status=429)
        if (request.content_length or 0) > wiring.HTTP_MAX_BODY_BYTES:
            return web.json_response({"message": "Request Entity Too Large"}, status=413)
        try:
            claims = self._jwt_claims(request.headers.get("Authorization", ""))
        except Unauthorized:
            return web.json_response(
                {"message": "Unauthorized"},
                status=401,
                headers={"www-authenticate": 'Bearer error="invalid_token"'},
            )
        body = await request.read()
        if len(body) > wiring.HTTP_MAX_BODY_BYTES:
            return web.json_response({"message": "Request Entity Too Large"}, status=413)
        event = self._event(request, body, claims)
        await route_overhead(self.timing)
        try:
            result = await self.invoker.invoke(fn.name, event, event["routeKey"])
        except Exception:
            return web.json_response({"message": "Internal Server Error"}, status=500)
        if not isinstance(result, dict):
            return web.json_response({"message": "Internal Server Error"}, status=500)
        headers = {str(k): str(v) for k, v in (result.get("headers") or {}).items()}
        answer = result.get("body")
        data = (
            base64.b64decode(str(answer or ""))
            if result.get("isBase64Encoded")
            else str(answer or "").encode()
        )
        return web.Response(status=int(result.get("statusCode", 200)), body=data, headers=headers)

    def _jwt_claims(self, authorization: str) -> dict[str, Any]:
        """The bearer token's claims, as API Gateway's JWT authorizer passes them (strings)."""
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("no bearer token")
        if self._verifier is None:
            secret = self._jwt_secret or os.environ.get(wiring.JWT_SECRET_ENV, "local-dev-secret")
            self._verifier = TokenVerifier(secret=secret)
        claims = self._verifier.claims(token.strip())
        return {k: v if isinstance(v, str) else json.dumps(v) for k, v in claims.items()}

    def _event(self, request: web.Request, body: bytes, claims: dict[str, Any]) -> dict[str, Any]:
        """A payload format 2.0 event, as the HTTP API's Lambda proxy integration sends it."""
        route_key = f"POST /v1/{request.match_info['action']}"
        try:
            text, encoded = body.decode(), False
        except UnicodeDecodeError:
            text, encoded = base64.b64encode(body).decode(), True
        now = datetime.now(UTC)
        return {
            "version": "2.0",
            "routeKey": route_key,
            "rawPath": request.path,
            "rawQueryString": request.query_string,
            "headers": {k.lower(): v for k, v in request.headers.items()},
            "requestContext": {
                "accountId": ACCOUNT,
                "apiId": API_ID,
                "authorizer": {"jwt": {"claims": claims, "scopes": None}},
                "domainName": self.host,
                "domainPrefix": self.host.split(".")[0],
                "http": {
                    "method": "POST",
                    "path": request.path,
                    "protocol": f"HTTP/{request.version.major}.{request.version.minor}",
                    "sourceIp": request.remote or "127.0.0.1",
                    "userAgent": request.headers.get("User-Agent", ""),
                },
                "requestId": new_id(),
                "routeKey": route_key,
                "stage": "$default",
                "time": request_time(now),
                "timeEpoch": int(now.timestamp() * 1000),
            },
            "body": text,
            "isBase64Encoded": encoded,
        }
