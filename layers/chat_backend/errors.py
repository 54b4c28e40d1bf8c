"""Typed domain errors, in two families.

`ChatError` and its kinds carry the protocol's ERROR code (PROTOCOL.md, Errors): use cases raise
them and routes.py maps them to ERROR frames in one place.

The others are what the data layer reports when a write or a call could not be done (a condition
that no longer held, something gone): the use case decides what each means. They are how logic
hears of DynamoDB, S3, SNS and the @connections API without importing boto3 or botocore: the
stores in dal/ catch botocore's errors and raise these.
"""

from __future__ import annotations

from typing import ClassVar


class ChatError(Exception):
    """Anything a use case refuses; a bare ChatError is the protocol's INTERNAL."""

    code: ClassVar[str] = "INTERNAL"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(ChatError):
    """A frame the protocol does not accept: malformed JSON, a missing or ill-typed field, an
    unknown action, or a request no frame may make (changing a direct chat's members)."""

    code = "BAD_REQUEST"


class Unauthorized(ChatError):
    code = "UNAUTHORIZED"  # no token, or one that does not verify


class Forbidden(ChatError):
    """Not the caller's to do: not a member, not an admin, a stranger's presence."""

    code = "FORBIDDEN"


class NotFound(ChatError):
    code = "NOT_FOUND"  # no such chat, message or media, as far as the caller may know


class TooLarge(ChatError):
    """A frame or an upload over its limit (API Gateway's 128 KiB, the media size)."""

    code = "TOO_LARGE"


class GroupFull(ChatError):
    code = "GROUP_FULL"  # a group would pass MAX_GROUP_MEMBERS


class RateLimited(ChatError):
    """Try again in `retry_after_ms` (PROTOCOL.md v1.1), with the same clientMsgId / requestId."""

    code = "RATE_LIMITED"

    def __init__(self, message: str, retry_after_ms: int = 1000) -> None:
        super().__init__(message)
        self.retry_after_ms = max(1, retry_after_ms)


# --- what the data layer reports ------------------------------------------------------------------


class ChatExists(Exception):
    """createChat's id is taken: only a direct chat's (the pair's) can be, so the chat exists."""


class MediaExists(Exception):
    """An upload's MEDIA# item is there already (nothing is overwritten)."""


class MembershipMoved(Exception):
    """The chat's membership changed, or a change is in flight, since the caller read it: the
    seq was not reserved."""


class SeqTaken(Exception):
    """The seq already holds an item (a VOID that beat a slow writer, or the message itself)."""


class MediaNotInChat(Exception):
    """A send named a mediaId that is not a MEDIA# item of its chat (unknown, or another chat's)."""


class BlobMissing(Exception):
    """A media id's blob was never uploaded (or is gone)."""


class ChangeLost(Exception):
    """A membership change could not commit: its seq was filled with a VOID (it was too slow) or
    the change was abandoned. Nothing of it was written; decide again."""


class ChangeConflict(Exception):
    """The change's transaction met another operation on one of its items: try it again."""


class LimitRaced(Exception):
    """A rate-limit step's guess or bound did not hold: nothing was written. `tats` is the
    bucket's item as it is (party -> theoretical arrival time, epoch ms)."""

    def __init__(self, tats: dict[str, int]) -> None:
        super().__init__("rate-limit bucket moved")
        self.tats = tats


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
