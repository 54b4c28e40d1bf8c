"""The `$connect` REQUEST authorizer: the token from the query string, verified, becomes the
identity (userId, deviceId) that API Gateway passes to every route of the connection. The device
is the token's `device` claim, else the `device` query-string parameter (Cognito tokens have no
such claim; see `TokenVerifier.verify` for why that is safe), else "default"."""

from typing import Any

from aws_lambda_powertools.utilities.data_classes import event_source
from aws_lambda_powertools.utilities.data_classes.api_gateway_authorizer_event import (
    APIGatewayAuthorizerRequestEvent,
    APIGatewayAuthorizerResponseWebSocket,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from chat_backend.errors import Unauthorized
from chat_backend.handler_kit import lambda_handler
from chat_backend.observability import count, logger
from chat_backend.services import services


@lambda_handler("authorizer")
@event_source(data_class=APIGatewayAuthorizerRequestEvent)
def handler(event: APIGatewayAuthorizerRequestEvent, context: LambdaContext) -> dict[str, Any]:
    query = event.query_string_parameters or {}
    try:
        identity = services().verifier.verify(query.get("token"), query.get("device"))
    except Unauthorized as exc:
        # A Deny (API Gateway answers 403), not a raise: a raise counts as a function error, and a
        # stranger's bad token must not fire the error alarm.
        logger.info("connection refused", extra={"reason": exc.message})
        count("ConnectionsRefused")
        denial = APIGatewayAuthorizerResponseWebSocket.from_route_arn(
            event.method_arn, principal_id="anonymous"
        )
        denial.deny_all_routes()
        return denial.asdict()
    policy = APIGatewayAuthorizerResponseWebSocket.from_route_arn(
        event.method_arn,
        principal_id=identity.user_id,
        context={"userId": identity.user_id, "deviceId": identity.device_id},
    )
    policy.allow_all_routes()
    return policy.asdict()
