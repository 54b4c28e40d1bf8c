"""SNS mobile push: a platform endpoint per registered device (made from the platform application
of its platform: APNs or FCM), and notifications published to it.

The notification carries the chat id and a count, never content (messages are end-to-end
encrypted; the app syncs and decrypts when it wakes). APNs gets an alert with a generic text and
`mutable-content` (a notification service extension may fetch and decrypt), FCM a data message.
"""

from __future__ import annotations

import json
import re
from typing import Any

from botocore.exceptions import ClientError

from chat_backend.dal.aws import client
from chat_backend.errors import PushEndpointGone

# "... Endpoint <arn> already exists with the same Token, but different attributes."
EXISTING_ENDPOINT = re.compile(r"Endpoint (arn:\S+) already exists with the same [Tt]oken")
GONE_CODES = {"EndpointDisabled", "NotFound"}  # the token is no longer valid, or the endpoint gone


def payload(platform: str, chat_id: str, count: int) -> str:
    """The SNS message (MessageStructure=json) for one platform."""
    data = {"chatId": chat_id, "count": count}
    if platform == "fcm":
        body = {"data": {"chatId": chat_id, "count": str(count)}}
        return json.dumps({"GCM": json.dumps(body)})
    aps = {"alert": {"title": "New messages", "body": f"{count} new"}, "mutable-content": 1, "badge": count}
    key = "APNS_SANDBOX" if platform == "apns_sandbox" else "APNS"
    return json.dumps({key: json.dumps({"aps": aps, **data})})


class PushSender:
    def __init__(self, platforms: dict[str, str], sns: Any | None = None) -> None:
        self.platforms = platforms  # platform -> platform application ARN
        self.sns = sns or client("sns")

    def endpoint_for(self, platform: str, token: str) -> str:
        """The device's endpoint, enabled. SNS returns the existing one for a token it has, unless
        that one's attributes differ (it was disabled when the platform refused the token once):
        then it names it in the error, and it is enabled again (the pattern AWS documents)."""
        try:
            resp = self.sns.create_platform_endpoint(
                PlatformApplicationArn=self.platforms[platform], Token=token
            )
            return str(resp["EndpointArn"])
        except ClientError as exc:
            found = EXISTING_ENDPOINT.search(str(exc.response["Error"].get("Message", "")))
            if exc.response["Error"]["Code"] != "InvalidParameter" or found is None:
                raise
        arn = found.group(1)
        self.sns.set_endpoint_attributes(EndpointArn=arn, Attributes={"Token": token, "Enabled": "true"})
        return arn

    def delete(self, endpoint_arn: str) -> None:
        self.sns.delete_endpoint(EndpointArn=endpoint_arn)  # idempotent: a missing one is fine

    def notify(self, endpoint_arn: str, platform: str, chat_id: str, count: int) -> None:
        try:
            self.sns.publish(
                TargetArn=endpoint_arn, MessageStructure="json", Message=payload(platform, chat_id, count)
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] in GONE_CODES:
                raise PushEndpointGone(endpoint_arn) from exc
            raise
