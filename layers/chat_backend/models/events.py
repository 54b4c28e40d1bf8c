"""The events our functions receive from API Gateway, and the caller they identify."""

from __future__ import annotations

from aws_lambda_powertools.utilities.parser.models import (
    APIGatewayWebSocketConnectEventModel,
    APIGatewayWebSocketConnectEventRequestContext,
    APIGatewayWebSocketDisconnectEventModel,
    APIGatewayWebSocketDisconnectEventRequestContext,
    APIGatewayWebSocketMessageEventModel,
    APIGatewayWebSocketMessageEventRequestContext,
)
from pydantic import BaseModel, ConfigDict, Field

from chat_backend.models.common import Id, UserId


class AuthorizerContext(BaseModel):
    """What the $connect authorizer put in its context; API Gateway passes it on every route."""

    user_id: UserId = Field(alias="userId")
    device_id: Id = Field(alias="deviceId")


class RouteRequestContext(APIGatewayWebSocketMessageEventRequestContext):
    authorizer: AuthorizerContext


class RouteEvent(APIGatewayWebSocketMessageEventModel):
    """A WebSocket route invocation (MESSAGE events) carrying the authorizer's identity."""

    request_context: RouteRequestContext = Field(alias="requestContext")  # type: ignore[assignment]


class ConnectRequestContext(APIGatewayWebSocketConnectEventRequestContext):
    authorizer: AuthorizerContext


class ConnectEvent(APIGatewayWebSocketConnectEventModel):
    request_context: ConnectRequestContext = Field(alias="requestContext")  # type: ignore[assignment]


class DisconnectRequestContext(APIGatewayWebSocketDisconnectEventRequestContext):
    authorizer: AuthorizerContext


class DisconnectEvent(APIGatewayWebSocketDisconnectEventModel):
    request_context: DisconnectRequestContext = Field(alias="requestContext")  # type: ignore[assignment]


class Caller(BaseModel):
    """Who sent a frame, from the token (never from the frame)."""

    model_config = ConfigDict(frozen=True)
    user_id: str
    device_id: str
    connection_id: str
