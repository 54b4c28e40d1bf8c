"""The connections table: one item per user, one attribute per device holding its connection."""

from __future__ import annotations

from concurrent.futures import Executor
from typing import Any

from chat_backend.dal.aws import TableStore, av
from chat_backend.dal.batching import batch_get
from chat_backend.dal.conditional import ConditionFailed, conditional, conditional_or_none
from chat_backend.models.common import epoch_ms

DEVICE_PREFIX = "dev_"


def _device_attr(device_id: str) -> str:
    return f"{DEVICE_PREFIX}{device_id}"


def _devices(item: dict[str, Any]) -> dict[str, str]:
    """{deviceId: connectionId} of a connections item."""
    return {
        name[len(DEVICE_PREFIX) :]: value["M"]["connectionId"]["S"]
        for name, value in item.items()
        if name.startswith(DEVICE_PREFIX)
    }


class ConnectionRegistry(TableStore):
    def register(
        self, user_id: str, device_id: str, connection_id: str, connected_at: str, expires_at: int
    ) -> None:
        """The device's newest connection replaces any older one of the same device."""
        self.ddb.update_item(
            TableName=self.table,
            Key={"userId": av(user_id)},
            UpdateExpression="SET #d = :c, expiresAt = :ttl",
            ExpressionAttributeNames={"#d": _device_attr(device_id)},
            ExpressionAttributeValues={
                ":c": av({"connectionId": connection_id, "connectedAt": connected_at}),
                ":ttl": av(expires_at),
            },
        )

    def unregister(self, user_id: str, device_id: str, connection_id: str) -> bool:
        """Remove the device's connection only if it is still this one (a reconnect may have
        replaced it). Returns whether anything was removed."""
        return self.unregister_and_list(user_id, device_id, connection_id) is not None

    def unregister_and_list(self, user_id: str, device_id: str, connection_id: str) -> dict[str, str] | None:
        """As `unregister`, and the user's devices still connected after it ({deviceId:
        connectionId}, from the same write); None when nothing was removed."""
        resp = self._update_device(
            user_id,
            device_id,
            UpdateExpression="REMOVE #d",
            ConditionExpression="#d.connectionId = :cid",
            ExpressionAttributeValues={":cid": av(connection_id)},
            ReturnValues="ALL_NEW",
        )
        return None if resp is None else _devices(resp.get("Attributes", {}))

    def unregister_gone(
        self, user_id: str, device_id: str, connection_id: str, registered_before: str
    ) -> bool:
        """After a 410 for this connection: remove it, unless it was registered at or after
        `registered_before` (ISO time). A connection is registered during its $connect, before
        API Gateway accepts posts to it, so a young one answers 410 for a moment and is not gone.
        True when it was removed or is no longer the device's (gone either way); False when it is
        the device's young connection (try again later)."""
        try:
            conditional(
                self.ddb.update_item,
                TableName=self.table,
                Key={"userId": av(user_id)},
                UpdateExpression="REMOVE #d",
                ConditionExpression="#d.connectionId = :cid AND #d.connectedAt < :before",
                ExpressionAttributeNames={"#d": _device_attr(device_id)},
                ExpressionAttributeValues={":cid": av(connection_id), ":before": av(registered_before)},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ConditionFailed as exc:
            return _devices(exc.item or {}).get(device_id) != connection_id
        return True

    def beat(self, user_id: str, device_id: str, connection_id: str, now_ms: int) -> int | None:
        """Note a heartbeat of the device's connection; returns the time of its previous one (or of
        the connection, for the first), epoch ms. None when the device has another connection now."""
        resp = self._update_device(
            user_id,
            device_id,
            UpdateExpression="SET #d.beatAt = :now",
            ConditionExpression="#d.connectionId = :cid",
            ExpressionAttributeValues={":now": av(now_ms), ":cid": av(connection_id)},
            ReturnValues="ALL_OLD",
        )
        if resp is None:
            return None
        device = resp["Attributes"][_device_attr(device_id)]["M"]
        if "beatAt" in device:
            return int(device["beatAt"]["N"])
        return epoch_ms(device["connectedAt"]["S"])

    def devices_of(
        self, user_ids: list[str], pool: Executor | None = None, consistent: bool = False
    ) -> dict[str, dict[str, str]]:
        """userId -> {deviceId: connectionId} for the users with a live connection; 100 users per
        call, the calls run on `pool` when given (a 10,000-member group is 100 calls). Read
        `consistent` after storing a message, so a device registered before the read is seen
        (and one registered after it finds the message by the sync it runs on connect)."""
        request = {"Keys": [{"userId": av(u)} for u in user_ids], "ConsistentRead": consistent}
        items = batch_get(self.ddb, self.table, request, pool)
        return {item["userId"]["S"]: devices for item in items if (devices := _devices(item))}

    def _update_device(self, user_id: str, device_id: str, **request: Any) -> dict[str, Any] | None:
        """An UpdateItem of the user's item with a condition on the device's attribute ("#d");
        None when the condition did not hold."""
        return conditional_or_none(
            self.ddb.update_item,
            TableName=self.table,
            Key={"userId": av(user_id)},
            ExpressionAttributeNames={"#d": _device_attr(device_id)},
            **request,
        )
