"""Every deploy-time parameter of the app, read from CDK context in this one place.

-c stage=<name>              stage name, the stack is `chat-<name>` (default "dev")
-c alarmEmail=<address>      alarms notify an SNS topic with this email subscription (default: none)
-c userPoolId=<id>           use an existing Cognito user pool instead of creating one ...
-c userPoolClientId=<id>     ... and its app client (both or neither)
"""

from __future__ import annotations

from dataclasses import dataclass

from constructs import Node

DEFAULT_STAGE = "dev"


@dataclass(frozen=True)
class ExistingUserPool:
    user_pool_id: str
    client_id: str


@dataclass(frozen=True)
class DeploySettings:
    stage: str = DEFAULT_STAGE
    alarm_email: str | None = None
    existing_user_pool: ExistingUserPool | None = None

    @classmethod
    def from_context(cls, node: Node) -> DeploySettings:
        def text(key: str) -> str | None:
            value = node.try_get_context(key)
            return (str(value).strip() or None) if value is not None else None

        pool_id, client_id = text("userPoolId"), text("userPoolClientId")
        if (pool_id is None) != (client_id is None):
            raise ValueError("context: give both userPoolId and userPoolClientId, or neither")
        return cls(
            stage=text("stage") or DEFAULT_STAGE,
            alarm_email=text("alarmEmail"),
            existing_user_pool=ExistingUserPool(pool_id, client_id) if pool_id and client_id else None,
        )
