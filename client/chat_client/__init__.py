"""Python SDK for the serverless chat backend (wire protocol v1 and v1.1, see docs/PROTOCOL.md).

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
    ToDevice,
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
    "ToDevice",
    "mint_token",
]
