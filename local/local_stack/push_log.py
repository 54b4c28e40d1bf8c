"""Mobile push, locally: moto stands in for SNS (platform applications, endpoints, publish), and
every notification it would send to a phone is appended, as one JSON line, to the file named by
CHAT_PUSH_LOG, where tests and `chat notifications` read it. A disabled endpoint refuses as SNS
does (EndpointDisabled): that is how a stale token is played. Endpoint ARNs follow from the
application and the token, so a kept data directory's registrations find theirs again.

Installed in the moto server process (local_stack/moto_server.py), never in the functions.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from typing import Any

from moto.sns import models as sns_models

PUSH_LOG_ENV = "CHAT_PUSH_LOG"


def install() -> None:
    _stable_endpoint_arns()
    path = os.environ.get(PUSH_LOG_ENV)
    if not path:
        return
    original = sns_models.PlatformEndpoint.publish

    def publish(self: Any, message: str) -> str:
        message_id = str(original(self, message))
        line = {
            "at": round(time.time(), 3),
            "endpointArn": self.arn,
            "token": self.token,
            "platform": self.application.platform,
            "message": json.loads(message) if message.startswith("{") else message,
            "messageId": message_id,
        }
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps(line) + "\n")
        return message_id

    sns_models.PlatformEndpoint.publish = publish  # type: ignore[method-assign]


def _stable_endpoint_arns() -> None:
    """An endpoint's ARN derived from its application and token (SNS makes a random one): moto
    keeps no state across a restart, and the stack makes the kept registrations' endpoints again
    (bootstrap.restore_push_endpoints), under the ARNs the push table holds."""
    original = sns_models.PlatformEndpoint.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.id = uuid.uuid5(uuid.NAMESPACE_URL, f"{self.application.arn}|{self.token}")
        self.arn = f"{self.arn.rsplit('/', 1)[0]}/{self.id}"

    sns_models.PlatformEndpoint.__init__ = init  # type: ignore[method-assign]


def read(path: str) -> list[dict[str, Any]]:
    """Every notification recorded so far."""
    try:
        with open(path, encoding="utf-8") as log:
            return [json.loads(line) for line in log if line.strip()]
    except FileNotFoundError:
        return []
