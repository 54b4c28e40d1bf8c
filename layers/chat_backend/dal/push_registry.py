"""The push table (wiring: `push`): each user's devices registered for mobile push, and the gates
that keep notifications few.

Key <user>: `devices`, a map deviceId -> {platform, token, endpointArn, lastAt, pending}; one item
per user so a job's users are read 100 per BatchGetItem. Key CHAT#<chat>: `lastAt` and `lastSeq`
of the last round of a large group's notifications (expires a day later).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from chat_backend.dal.aws import av, client, from_item, is_conditional_failure
from chat_backend.dal.batching import BATCH_GET_MAX_KEYS, batch_get

CHAT_GATE_TTL_S = 24 * 3600


@dataclass(frozen=True)
class PushRegistration:
    user_id: str
    device_id: str
    platform: str
    token: str
    endpoint_arn: str


class PushRegistry:
    def __init__(self, table: str, ddb: Any | None = None) -> None:
        self.table = table
        self.ddb = ddb or client("dynamodb")

    def register(self, registration: PushRegistration) -> str | None:
        """Keep the device's registration; the endpoint it replaces, if another (to delete)."""
        key = {"key": av(registration.user_id)}
        self.ddb.update_item(  # the map must exist before a path into it can be set
            TableName=self.table,
            Key=key,
            UpdateExpression="SET devices = if_not_exists(devices, :empty)",
            ExpressionAttributeValues={":empty": {"M": {}}},
        )
        entry = {
            "platform": av(registration.platform),
            "token": av(registration.token),
            "endpointArn": av(registration.endpoint_arn),
            "lastAt": av(0),
            "pending": av(0),
        }
        old = self.ddb.update_item(
            TableName=self.table,
            Key=key,
            UpdateExpression="SET devices.#d = :entry",
            ExpressionAttributeNames={"#d": registration.device_id},
            ExpressionAttributeValues={":entry": {"M": entry}},
            ReturnValues="UPDATED_OLD",
        ).get("Attributes")
        replaced = _endpoint_in(old, registration.device_id)
        return replaced if replaced != registration.endpoint_arn else None

    def unregister(self, user_id: str, device_id: str, endpoint_arn: str | None = None) -> str | None:
        """Forget the device's registration (only while it is still `endpoint_arn`, when given: a
        stale token found while a newer one was registered leaves the newer one). Its endpoint."""
        condition = "attribute_exists(devices.#d)"
        values: dict[str, Any] = {}
        if endpoint_arn is not None:
            condition += " AND devices.#d.endpointArn = :arn"
            values[":arn"] = av(endpoint_arn)
        try:
            old = self.ddb.update_item(
                TableName=self.table,
                Key={"key": av(user_id)},
                UpdateExpression="REMOVE devices.#d",
                ConditionExpression=condition,
                ExpressionAttributeNames={"#d": device_id},
                **({"ExpressionAttributeValues": values} if values else {}),
                ReturnValues="UPDATED_OLD",
            ).get("Attributes")
        except ClientError as exc:
            if is_conditional_failure(exc):
                return None
            raise
        return _endpoint_in(old, device_id)

    def registrations_of(self, users: list[str]) -> list[PushRegistration]:
        found: list[PushRegistration] = []
        for start in range(0, len(users), BATCH_GET_MAX_KEYS):
            keys = [{"key": av(u)} for u in dict.fromkeys(users[start : start + BATCH_GET_MAX_KEYS])]
            for item in batch_get(
                self.ddb,
                self.table,
                {
                    "Keys": keys,
                    "ProjectionExpression": "#k, devices",
                    "ExpressionAttributeNames": {"#k": "key"},
                },
            ):
                value = from_item(item)
                for device_id, entry in (value.get("devices") or {}).items():
                    found.append(
                        PushRegistration(
                            value["key"], device_id, entry["platform"], entry["token"], entry["endpointArn"]
                        )
                    )
        return found

    def take_turn(self, registration: PushRegistration, now: int, window_s: int) -> int | None:
        """The device's turn to be notified: once per `window_s`. The count to show (this message
        and those counted since its last notification), or None when it was notified within the
        window (this message is then counted into the next)."""
        names = {"#d": registration.device_id}
        try:
            old = self.ddb.update_item(
                TableName=self.table,
                Key={"key": av(registration.user_id)},
                UpdateExpression="SET devices.#d.lastAt = :now, devices.#d.pending = :zero",
                ConditionExpression="devices.#d.endpointArn = :arn AND devices.#d.lastAt <= :cutoff",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues={
                    ":now": av(now),
                    ":zero": av(0),
                    ":arn": av(registration.endpoint_arn),
                    ":cutoff": av(now - window_s),
                },
                ReturnValues="UPDATED_OLD",
            )["Attributes"]
            return int(from_item(old)["devices"][registration.device_id]["pending"]) + 1
        except ClientError as exc:
            if not is_conditional_failure(exc):
                raise
        try:
            self.ddb.update_item(
                TableName=self.table,
                Key={"key": av(registration.user_id)},
                UpdateExpression="SET devices.#d.pending = devices.#d.pending + :one",
                ConditionExpression="devices.#d.endpointArn = :arn",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues={":one": av(1), ":arn": av(registration.endpoint_arn)},
            )
        except ClientError as exc:
            if not is_conditional_failure(exc):  # unregistered meanwhile: nothing to count
                raise
        return None

    def open_chat_round(self, chat_id: str, seq: int, now: int, window_s: int) -> bool:
        """Whether message `seq` of a large group opens (or is) this window's round of
        notifications: at most one message's round per chat per `window_s`."""
        try:
            self.ddb.update_item(
                TableName=self.table,
                Key={"key": av(f"CHAT#{chat_id}")},
                UpdateExpression="SET lastAt = :now, lastSeq = :seq, expiresAt = :exp",
                ConditionExpression="attribute_not_exists(lastAt) OR lastAt <= :cutoff OR lastSeq = :seq",
                ExpressionAttributeValues={
                    ":now": av(now),
                    ":seq": av(seq),
                    ":cutoff": av(now - window_s),
                    ":exp": av(now + CHAT_GATE_TTL_S),
                },
            )
        except ClientError as exc:
            if is_conditional_failure(exc):
                return False
            raise
        return True


def _endpoint_in(attributes: dict[str, Any] | None, device_id: str) -> str | None:
    """The device's endpoint in an update's UPDATED_OLD attributes (none for a new device)."""
    old = from_item(attributes or {}).get("devices", {}).get(device_id) or {}
    return str(old["endpointArn"]) if "endpointArn" in old else None
