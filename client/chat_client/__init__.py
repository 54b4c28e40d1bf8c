"""Python SDK for the serverless chat backend (wire protocol v1 and v1.1, see docs/PROTOCOL.md).

``ChatClient`` speaks the protocol; ``SecureChat`` over it encrypts end to end (docs/E2E.md) with a
``DeviceStore`` per user and device. Never imports the backend.
"""

from chat_client.client import ChatClient
from chat_client.crypto.store import DeviceStore, new_store_key
from chat_client.crypto.trust import DeviceNotice, IdentityChanged
from chat_client.models import (
    Ack,
    ChatAuthError,
    ChatClosedError,
    ChatConnectionError,
    ChatServerError,
    Message,
    ToDevice,
)
from chat_client.secure import Decrypted, SecureChat
from chat_client.tokens import mint_token

__all__ = [
    "Ack",
    "ChatAuthError",
    "ChatClient",
    "ChatClosedError",
    "ChatConnectionError",
    "ChatServerError",
    "Decrypted",
    "DeviceNotice",
    "DeviceStore",
    "IdentityChanged",
    "Message",
    "SecureChat",
    "ToDevice",
    "mint_token",
    "new_store_key",
]
