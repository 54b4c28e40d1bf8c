"""The keys table: end-to-end encryption public keys (the server never sees a private key).

Per user (pk userId):
- sk `DEVICE#<device>`: the device's identity key and signed prekey (replaced by each publish).
- sk `OTPK#<device>#<keyId>`: one unused one-time prekey of the device. Handing it out deletes it
  (a conditional DeleteItem), so each is handed out at most once, however many fetch at once.

Device ids never contain `#` (models.Id), so `OTPK#<device>#` prefixes exactly one device's keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import islice
from typing import Any, Literal

from chat_backend.dal.aws import TableStore, av
from chat_backend.dal.batching import batch_write, query_items
from chat_backend.dal.conditional import conditional_or_none
from chat_backend.dal.item_kinds import ItemKind

DEVICE = ItemKind("DEVICE#")  # DEVICE#<device>
ONE_TIME = ItemKind("OTPK#")  # OTPK#<device>#<keyId>
# One-time prekeys read per claim attempt: concurrent fetchers race for the first ones, and a
# fetcher that loses takes the next one of its page.
CLAIM_PAGE = 10


@dataclass(frozen=True)
class PreKey:
    key_id: int
    public_key: str


@dataclass(frozen=True)
class SignedPreKeyRecord(PreKey):
    signature: str  # by the device's identity key, over the public key


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


class KeyStore(TableStore):
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
            Key=self._key(user_id, DEVICE.sk(device_id)),
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
                            **self._key(user_id, ONE_TIME.sk(device_id, k.key_id)),
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
                **self._key(user_id, DEVICE.sk(device_id)),
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
        keys = query_items(
            self.ddb, self._one_time_query(user_id, device_id, ProjectionExpression="userId, sk")
        )
        batch_write(self.ddb, self.table, [{"DeleteRequest": {"Key": key}} for key in keys])

    def count_one_time(self, user_id: str, device_id: str) -> int:
        pages = self.ddb.get_paginator("query").paginate(
            **self._one_time_query(user_id, device_id, Select="COUNT")
        )
        return sum(int(page["Count"]) for page in pages)

    def devices(self, user_id: str, after: str | None = None, limit: int | None = None) -> list[DeviceRecord]:
        """Every device of the user that published keys, in deviceId order (only those after the
        device `after`, and at most `limit`, when given)."""
        request = DEVICE.query(self.table, ("userId", user_id), ConsistentRead=True)
        if after is not None:
            request["ExclusiveStartKey"] = self._key(user_id, DEVICE.sk(after))
        if limit is not None:
            request["PaginationConfig"] = {"PageSize": limit}  # pages read lazily: no more than needed
        return [_device(item) for item in islice(query_items(self.ddb, request), limit)]

    def claim_one_time(self, user_id: str, device_id: str) -> PreKey | None:
        """Take one unused one-time prekey of the device, or None when it has none left. Each key
        is deleted by exactly one claimer (DeleteItem on attribute_exists); a claimer that loses
        the race for a key takes the next."""
        while True:
            resp = self.ddb.query(
                **self._one_time_query(user_id, device_id, ProjectionExpression="sk", Limit=CLAIM_PAGE)
            )
            if not resp["Items"]:
                return None
            for item in resp["Items"]:
                taken = conditional_or_none(
                    self.ddb.delete_item,
                    TableName=self.table,
                    Key={"userId": av(user_id), "sk": item["sk"]},
                    ConditionExpression="attribute_exists(sk)",
                    ReturnValues="ALL_OLD",
                )
                if taken is None:
                    continue  # another fetch took it
                old = taken["Attributes"]
                return PreKey(key_id=int(old["keyId"]["N"]), public_key=old["publicKey"]["S"])
            # Every key of the page went to others; the next query no longer sees them.

    def _one_time_query(self, user_id: str, device_id: str, **request: Any) -> dict[str, Any]:
        """The Query of the device's unused one-time prekeys, read consistently."""
        return ONE_TIME.query(self.table, ("userId", user_id), device_id, ConsistentRead=True, **request)

    @staticmethod
    def _key(user_id: str, sk: str) -> dict[str, Any]:
        return {"userId": av(user_id), "sk": av(sk)}
