"""Typed domain errors. Each carries the protocol's ERROR code; handlers map them in one place."""

from __future__ import annotations

from typing import ClassVar


class ChatError(Exception):
    code: ClassVar[str] = "INTERNAL"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(ChatError):
    code = "BAD_REQUEST"


class Unauthorized(ChatError):
    code = "UNAUTHORIZED"


class Forbidden(ChatError):
    code = "FORBIDDEN"


class NotFound(ChatError):
    code = "NOT_FOUND"


class TooLarge(ChatError):
    code = "TOO_LARGE"


class GroupFull(ChatError):
    code = "GROUP_FULL"


class RateLimited(ChatError):
    """Try again in `retry_after_ms` (PROTOCOL.md v1.1), with the same clientMsgId / requestId."""

    code = "RATE_LIMITED"

    def __init__(self, message: str, retry_after_ms: int = 1000) -> None:
        super().__init__(message)
        self.retry_after_ms = max(1, retry_after_ms)


class ConnectionGone(Exception):
    """The recipient's WebSocket connection no longer exists (API Gateway answered 410)."""

    def __init__(self, connection_id: str) -> None:
        super().__init__(connection_id)
        self.connection_id = connection_id


class PushEndpointGone(Exception):
    """The push platform no longer accepts the device's token (uninstalled, expired, revoked):
    SNS disabled its endpoint, or it no longer exists."""

    def __init__(self, endpoint_arn: str) -> None:
        super().__init__(endpoint_arn)
        self.endpoint_arn = endpoint_arn
