"""The keys table: end-to-end encryption public keys (the server never sees a private key).

Per user (pk userId):
- sk `DEVICE#<device>`: the device's identity key and signed prekey (replaced by each publish).
- sk `OTPK#<device>#<keyId>`: one unused one-time prekey of the device. Handing it out deletes it
  (a conditional DeleteItem), so each is handed out at most once, however many fetch at once.

Device ids never contain `#` (models.Id), so `OTPK#<device>#` prefixes exactly one device's keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from botocore.exceptions import ClientError

from chat_backend.dal.aws import av, client, is_conditional_failure
from chat_backend.dal.batching import batch_write

DEVICE_PREFIX = "DEVICE#"
OTPK_PREFIX = "OTPK#"
# One-time prekeys read per claim attempt: concurrent fetchers race for the first ones, and a
# fetcher that loses takes the next one of its page.
CLAIM_PAGE = 10


def device_sk(device_id: str) -> str:
    return f"{DEVICE_PREFIX}{device_id}"


def otpk_prefix(device_id: str) -> str:
    return f"{OTPK_PREFIX}{device_id}#"


def otpk_sk(device_id: str, key_id: int) -> str:
    return f"{otpk_prefix(device_id)}{key_id}"


@dataclass(frozen=True)
class PreKey:
    key_id: int
    public_key: str


@dataclass(frozen=True)
class SignedPreKeyRecord:
    key_id: int
    public_key: str
    signature: str


@dataclass(frozen=True)
class DeviceRecord:
    device_id: str
    identity_key: str
    signed_pre_key: SignedPreKeyRecord
    signing_key: str | None = None


def _device(item: dict[str, Any]) -> DeviceRecord:
    spk = item["signedPreKey"]["M"]
    return DeviceRecord(
        device_id=item["deviceId"]["S"],
        identity_key=item["identityKey"]["S"],
        signed_pre_key=SignedPreKeyRecord(
            key_id=int(spk["keyId"]["N"]), public_key=spk["publicKey"]["S"], signature=spk["signature"]["S"]
        ),
        signing_key=item["signingKey"]["S"] if "signingKey" in item else None,
    )


DeviceChange = Literal["added", "keysChanged"]


@dataclass(frozen=True)
class Published:
    remaining: int  # unused one-time prekeys the device now has
    change: DeviceChange | None  # a device new to the user, or a new identity key; None: a top-up


class KeyStore:
    def __init__(self, table: str, ddb: Any | None = None) -> None:
        self.table = table
        self.ddb = ddb or client("dynamodb")

    def publish(
        self,
        user_id: str,
        device_id: str,
        identity_key: str,
        signed: SignedPreKeyRecord,
        one_time: list[PreKey],
        signing_key: str | None = None,
    ) -> Published:
        """Store the device's keys (one-time prekeys first, batched, then the device item that makes
        the device visible); returns how many unused one-time prekeys the device now has, and what
        the device item's replacement changed (the put returns the item it replaced). A device
        that comes with another identity key (reinstalled) first loses the one-time prekeys of
        the old one: a session begun on one of those could never be opened by the new account."""
        current = self.ddb.get_item(
            TableName=self.table,
            Key=self._key(user_id, device_sk(device_id)),
            ProjectionExpression="identityKey",
            ConsistentRead=True,
        ).get("Item")
        if current is not None and current["identityKey"]["S"] != identity_key:
            self._forget_one_time(user_id, device_id)
        batch_write(
            self.ddb,
            self.table,
            [
                {
                    "PutRequest": {
                        "Item": {
                            **self._key(user_id, otpk_sk(device_id, k.key_id)),
                            "keyId": av(k.key_id),
                            "publicKey": av(k.public_key),
                        }
                    }
                }
                for k in one_time
            ],
        )
        old = self.ddb.put_item(
            TableName=self.table,
            ReturnValues="ALL_OLD",
            Item={
                **self._key(user_id, device_sk(device_id)),
                "deviceId": av(device_id),
                "identityKey": av(identity_key),
                **({"signingKey": av(signing_key)} if signing_key else {}),
                "signedPreKey": {
                    "M": {
                        "keyId": av(signed.key_id),
                        "publicKey": av(signed.public_key),
                        "signature": av(signed.signature),
                    }
                },
            },
        ).get("Attributes")
        change: DeviceChange | None = None
        if old is None:
            change = "added"
        elif old["identityKey"]["S"] != identity_key:
            change = "keysChanged"
        return Published(self.count_one_time(user_id, device_id), change)

    def _forget_one_time(self, user_id: str, device_id: str) -> None:
        pages = self.ddb.get_paginator("query").paginate(
            TableName=self.table,
            KeyConditionExpression="userId = :u AND begins_with(sk, :p)",
            ExpressionAttributeValues={":u": av(user_id), ":p": av(otpk_prefix(device_id))},
            ProjectionExpression="userId, sk",
            ConsistentRead=True,
        )
        batch_write(
            self.ddb,
            self.table,
            [{"DeleteRequest": {"Key": item}} for page in pages for item in page["Items"]],
        )

    def count_one_time(self, user_id: str, device_id: str) -> int:
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "userId = :u AND begins_with(sk, :p)",
            "ExpressionAttributeValues": {":u": av(user_id), ":p": av(otpk_prefix(device_id))},
            "Select": "COUNT",
            "ConsistentRead": True,
        }
        total = 0
        while True:
            resp = self.ddb.query(**kwargs)
            total += int(resp["Count"])
            if "LastEvaluatedKey" not in resp:
                return total
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    def devices(self, user_id: str, after: str | None = None, limit: int | None = None) -> list[DeviceRecord]:
        """Every device of the user that published keys, in deviceId order (only those after the
        device `after`, and at most `limit`, when given)."""
        found: list[DeviceRecord] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "userId = :u AND begins_with(sk, :p)",
            "ExpressionAttributeValues": {":u": av(user_id), ":p": av(DEVICE_PREFIX)},
            "ConsistentRead": True,
        }
        if after is not None:
            kwargs["ExclusiveStartKey"] = self._key(user_id, device_sk(after))
        while limit is None or len(found) < limit:
            if limit is not None:
                kwargs["Limit"] = limit - len(found)
            resp = self.ddb.query(**kwargs)
            found.extend(_device(i) for i in resp["Items"])
            if "LastEvaluatedKey" not in resp:
                break
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]
        return found

    def claim_one_time(self, user_id: str, device_id: str) -> PreKey | None:
        """Take one unused one-time prekey of the device, or None when it has none left. Each key
        is deleted by exactly one claimer (DeleteItem on attribute_exists); a claimer that loses
        the race for a key takes the next."""
        while True:
            resp = self.ddb.query(
                TableName=self.table,
                KeyConditionExpression="userId = :u AND begins_with(sk, :p)",
                ExpressionAttributeValues={":u": av(user_id), ":p": av(otpk_prefix(device_id))},
                ProjectionExpression="sk",
                Limit=CLAIM_PAGE,
                ConsistentRead=True,
            )
            if not resp["Items"]:
                return None
            for item in resp["Items"]:
                try:
                    old = self.ddb.delete_item(
                        TableName=self.table,
                        Key={"userId": av(user_id), "sk": item["sk"]},
                        ConditionExpression="attribute_exists(sk)",
                        ReturnValues="ALL_OLD",
                    )["Attributes"]
                except ClientError as exc:
                    if is_conditional_failure(exc):
                        continue  # another fetch took it
                    raise
                return PreKey(key_id=int(old["keyId"]["N"]), public_key=old["publicKey"]["S"])
            # Every key of the page went to others; the next query no longer sees them.

    @staticmethod
    def _key(user_id: str, sk: str) -> dict[str, Any]:
        return {"userId": av(user_id), "sk": av(sk)}
