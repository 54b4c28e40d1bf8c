"""Routes `$connect` and `$disconnect`: keep the registry of each device's live connection, and the
user's presence with it."""

from typing import Any

from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.typing import LambdaContext

from chat_backend.errors import RateLimited
from chat_backend.handler_kit import lambda_handler
from chat_backend.logic.connections import close_connection, open_connection
from chat_backend.models.events import Caller, ConnectEvent, DisconnectEvent
from chat_backend.observability import count
from chat_backend.services import services


@lambda_handler("connect")
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    s = services()
    if event["requestContext"]["routeKey"] == "$connect":
        ctx = parse(event=event, model=ConnectEvent).request_context
        caller = _caller(ctx.authorizer, ctx.connection_id)
        try:
            s.guard.admit("$connect", caller.user_id, None)
        except RateLimited as exc:  # a reconnect loop: the handshake is refused, nothing is stored
            count("ConnectionsThrottled")
            return {"statusCode": 429, "headers": {"Retry-After": str(-(-exc.retry_after_ms // 1000))}}
        open_connection(s.registry, s.presence, s.pusher, caller, s.settings.connection_ttl_s)
        count("ConnectionsOpened")
    else:
        dctx = parse(event=event, model=DisconnectEvent).request_context
        close_connection(s.registry, s.presence, s.settle_queue, _caller(dctx.authorizer, dctx.connection_id))
        count("ConnectionsClosed")
    return {"statusCode": 200}


def _caller(authorizer: Any, connection_id: str) -> Caller:
    return Caller(user_id=authorizer.user_id, device_id=authorizer.device_id, connection_id=connection_id)
