"""Python SDK for the serverless chat backend (wire protocol v1, see PROTOCOL.md).

Depends only on ``websockets`` and ``PyJWT``; never imports the backend.
"""

from chat_client.client import ChatClient
from chat_client.models import (
    Ack,
    ChatAuthError,
    ChatClosedError,
    ChatConnectionError,
    ChatServerError,
    Message,
)
from chat_client.tokens import mint_token

__all__ = [
    "Ack",
    "ChatAuthError",
    "ChatClient",
    "ChatClosedError",
    "ChatConnectionError",
    "ChatServerError",
    "Message",
    "mint_token",
]
