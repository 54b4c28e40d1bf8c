"""The one stack: data, queues, media, identity, the shared layer, functions, the WebSocket API, alarms."""

from __future__ import annotations

from typing import Any

from aws_cdk import Annotations, App, CfnOutput, Stack, Validations
from cdk_nag import AwsSolutionsChecks
from constructs import Construct

from chat_stack.alarms import Alarms
from chat_stack.api import ChatApi
from chat_stack.buckets import Buckets
from chat_stack.functions import FunctionResources, Functions
from chat_stack.http_api import ChatHttpApi
from chat_stack.layer import SharedLayer
from chat_stack.media_cdn import KEY_SECRET, MediaCdn
from chat_stack.queues import Queues
from chat_stack.settings import DeploySettings
from chat_stack.tables import Tables
from chat_stack.users import Users


class ChatStack(Stack):
    def __init__(
        self, scope: Construct, construct_id: str, *, settings: DeploySettings, **kwargs: Any
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.tables = Tables(self, "Tables")
        self.queues = Queues(self, "Queues")
        self.buckets = Buckets(self, "Buckets")
        self.media_cdn = (
            MediaCdn(
                self,
                "MediaCdn",
                bucket=self.buckets.by_name["media"],
                access_logs=self.buckets.access_logs,
                key=settings.media_cdn,
            )
            if settings.media_cdn is not None
            else None
        )
        if self.media_cdn is None:
            Annotations.of(self).add_warning_v2(
                "chat:mediaCdnOff",
                "No mediaCdnPublicKey / mediaCdnKeySecretArn context: media downloads are presigned S3 "
                "GETs, without the CDN (README, Deploying to AWS).",
            )
        self.users = Users(self, "Users", existing=settings.existing_user_pool)
        self.layer = SharedLayer(self, "SharedLayer")
        resources = FunctionResources(
            tables=self.tables.by_name,
            queues=self.queues.by_name,
            buckets=self.buckets.by_name,
            secrets={KEY_SECRET: self.media_cdn.key_secret} if self.media_cdn is not None else {},
        )
        self.functions = Functions(
            self,
            "Functions",
            resources=resources,
            layer=self.layer.layer,
            authorizer_env=self.users.verifier_env(),
            push_platforms=settings.push_platforms,
        )
        if not settings.push_platforms:
            Annotations.of(self).add_warning_v2(
                "chat:pushOff",
                "No pushApnsArn / pushApnsSandboxArn / pushFcmArn context: offline devices get no mobile "
                "push (registerPush answers BAD_REQUEST; README, Deploying to AWS).",
            )
        if self.media_cdn is not None:
            self.media_cdn.serve(self.functions.by_name)
        self.api = ChatApi(self, "WebSocket", functions=self.functions.by_name, stage_name=settings.stage)
        self.http_api = ChatHttpApi(
            self,
            "Http",
            functions=self.functions.by_name,
            issuer=self.users.issuer,
            audience=self.users.client.user_pool_client_id,
        )
        self.alarms = Alarms(
            self,
            "Alarms",
            dead_letter_queues={**self.queues.dlqs, **self.functions.failed_records},
            functions=self.functions.by_name,
            stage=self.api.stage,
            alarm_email=settings.alarm_email,
        )

        self._outputs()

    def _outputs(self) -> None:
        """What a deployer and the clients need from the stack: output id -> (value, description)."""
        outputs = {
            "WebSocketUrl": (self.api.stage.url, "wss:// URL clients connect to"),
            "CallbackUrl": (
                self.api.stage.callback_url,
                "https:// @connections management endpoint of the stage",
            ),
            "HttpUrl": (self.http_api.url, "https:// base of the HTTP fallback (POST /v1/<action>)"),
            "UserPoolId": (self.users.pool.user_pool_id, "Cognito user pool"),
            "UserPoolClientId": (
                self.users.client.user_pool_client_id,
                "Cognito app client (the JWT audience)",
            ),
        }
        for name, bucket in self.buckets.by_name.items():  # e.g. MediaBucketName
            camel_case = "".join(part.title() for part in name.split("_"))
            outputs[f"{camel_case}BucketName"] = (bucket.bucket_name, f"The {name} bucket")
        outputs["MediaDownloads"] = (
            f"https://{self.media_cdn.distribution.distribution_domain_name}"
            if self.media_cdn is not None
            else "presigned S3 GETs (no media CDN)",
            "Where media download URLs point",
        )
        if self.alarms.topic is not None:
            outputs["AlarmTopicArn"] = (self.alarms.topic.topic_arn, "Alarm topic")
        for output_id, (value, description) in outputs.items():
            CfnOutput(self, output_id, value=value, description=description)


def build(app: App) -> ChatStack:
    """The app's one stack, named after the `stage` context, checked by cdk-nag's AwsSolutions pack."""
    settings = DeploySettings.from_context(app.node)
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return ChatStack(
        app,
        f"chat-{settings.stage}",
        settings=settings,
        description=f"Serverless chat backend ({settings.stage})",
    )
