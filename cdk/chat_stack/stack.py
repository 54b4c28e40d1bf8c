"""The one stack: data, queues, identity, the shared layer, functions and the WebSocket API."""

from __future__ import annotations

from typing import Any

from aws_cdk import App, CfnOutput, Stack
from constructs import Construct

from chat_stack.api import ChatApi
from chat_stack.functions import Functions
from chat_stack.layer import SharedLayer
from chat_stack.queues import Queues
from chat_stack.tables import Tables
from chat_stack.users import Users

DEFAULT_STAGE = "dev"


class ChatStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, stage: str, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.tables = Tables(self, "Tables")
        self.queues = Queues(self, "Queues")
        self.users = Users(self, "Users")
        self.layer = SharedLayer(self, "SharedLayer")
        self.functions = Functions(
            self,
            "Functions",
            tables=self.tables.by_name,
            queues=self.queues.by_name,
            layer=self.layer.layer,
            authorizer_env=self.users.verifier_env(),
        )
        self.api = ChatApi(self, "WebSocket", functions=self.functions.by_name, stage_name=stage)

        CfnOutput(self, "WebSocketUrl", value=self.api.stage.url, description="wss:// URL clients connect to")
        CfnOutput(self, "CallbackUrl", value=self.api.stage.callback_url, description="@connections endpoint")
        CfnOutput(self, "UserPoolId", value=self.users.pool.user_pool_id)
        CfnOutput(self, "UserPoolClientId", value=self.users.client.user_pool_client_id)


def build(app: App) -> ChatStack:
    """The app's one stack, named after the `stage` context (default "dev")."""
    stage = app.node.try_get_context("stage") or DEFAULT_STAGE
    return ChatStack(app, f"chat-{stage}", stage=stage, description=f"Serverless chat backend ({stage})")
