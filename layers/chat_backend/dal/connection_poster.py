"""The API Gateway management API: push a frame to one connection."""

from __future__ import annotations

from typing import Any

from chat_backend.dal.aws import client
from chat_backend.errors import ConnectionGone


class ConnectionPoster:
    def __init__(self, callback_url: str, api: Any | None = None) -> None:
        self.api = api or client("apigatewaymanagementapi", endpoint_url=callback_url)

    def post(self, connection_id: str, data: str) -> None:
        try:
            self.api.post_to_connection(ConnectionId=connection_id, Data=data.encode())
        except self.api.exceptions.GoneException as exc:  # a ClientError subclass: catch it first
            raise ConnectionGone(connection_id) from exc
