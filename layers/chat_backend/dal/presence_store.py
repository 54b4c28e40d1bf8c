"""The presence table, and the presence-settle queue.

Per user (pk userId):
- sk `STATE`: the announced status (what subscribers were last told), the lease (`leaseUntil`,
  epoch ms: the user counts as ONLINE until then), `lastActive` (epoch ms: the last connect,
  heartbeat or last-device disconnect) and `version`, bumped by every write (optimistic concurrency,
  and the dedup ids of the jobs and pushes a write causes).
- sk `SUB#<subscriber>#<device>`: a device watching this user, until `expiresAt` (TTL, epoch s).
- sk `WATCH#<device>`: the users this device of this user watches, so a heartbeat can renew them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from chat_backend.dal.aws import TableStore, av, from_item
from chat_backend.dal.batching import batch_get, batch_write, query_items
from chat_backend.dal.conditional import ConditionFailed, conditional, conditional_or_none
from chat_backend.dal.delivery_queue import FifoQueue, QueuedMessage
from chat_backend.dal.item_kinds import ItemKind

STATE = "STATE"
SUB = ItemKind("SUB#")  # SUB#<subscriber>#<device>
WATCH = ItemKind("WATCH#")  # WATCH#<device>

Status = Literal["ONLINE", "OFFLINE"]


@dataclass(frozen=True)
class PresenceState:
    user_id: str
    status: Status  # announced: what subscribers were last told
    lease_until_ms: int
    last_active_ms: int
    version: int


@dataclass(frozen=True)
class Subscription:
    subscriber: str
    device_id: str


def _state(item: dict[str, Any]) -> PresenceState:
    v = from_item(item)
    return PresenceState(
        user_id=v["userId"],
        status=v["status"],
        lease_until_ms=int(v["leaseUntil"]),
        last_active_ms=int(v["lastActive"]),
        version=int(v["version"]),
    )


class PresenceStore(TableStore):
    # --- status ----------------------------------------------------------------------------------

    def renew_lease(self, user_id: str, now_ms: int, lease_until_ms: int) -> PresenceState | None:
        """ONLINE with a lease until `lease_until_ms`; returns the state before (None: first time)."""
        resp = self.ddb.update_item(
            **self._state_update(
                user_id,
                "SET #s = :online, leaseUntil = :lease, lastActive = :now",
                online="ONLINE",
                lease=lease_until_ms,
                now=now_ms,
            ),
            ReturnValues="ALL_OLD",
        )
        old = resp.get("Attributes")
        return _state(old) if old and "version" in old else None

    def start_grace(self, user_id: str, now_ms: int, grace_until_ms: int) -> PresenceState | None:
        """The last device left at `now_ms`: end a live lease at `grace_until_ms`, unless a connect
        or heartbeat renewed it after `now_ms` (that device is back). A lapsed lease is left as it is
        (it must not come back to life). Returns the state after, or as it stands when nothing was
        written; None when the user has no state."""
        try:
            resp = conditional(
                self.ddb.update_item,
                **self._state_update(
                    user_id,
                    "SET leaseUntil = :grace, lastActive = :now",
                    online="ONLINE",
                    grace=grace_until_ms,
                    now=now_ms,
                ),
                ConditionExpression="#s = :online AND lastActive <= :now AND leaseUntil > :now",
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ConditionFailed as exc:
            return _state(exc.item) if exc.item else None
        return _state(resp["Attributes"])

    def mark_offline(self, state: PresenceState) -> bool:
        """OFFLINE, only if nothing was written since `state` was read."""
        updated = conditional_or_none(
            self.ddb.update_item,
            **self._state_update(state.user_id, "SET #s = :offline", offline="OFFLINE", read=state.version),
            ConditionExpression="version = :read",
        )
        return updated is not None

    def state_of(self, user_id: str) -> PresenceState | None:
        resp = self.ddb.get_item(TableName=self.table, Key=self._key(user_id, STATE), ConsistentRead=True)
        return _state(resp["Item"]) if "Item" in resp else None

    def states_of(self, user_ids: list[str]) -> dict[str, PresenceState]:
        """userId -> state, for the users that have one."""
        keys = [self._key(u, STATE) for u in user_ids]
        states = map(_state, batch_get(self.ddb, self.table, {"Keys": keys, "ConsistentRead": True}))
        return {state.user_id: state for state in states}

    # --- subscriptions ---------------------------------------------------------------------------

    def subscribers(self, user_id: str, now_s: int) -> list[Subscription]:
        """The devices watching the user now (TTL deletion lags: expired items are skipped here)."""
        request = SUB.query(
            self.table,
            ("userId", user_id),
            FilterExpression="expiresAt > :now",
            ExpressionAttributeValues={":now": av(now_s)},
            ProjectionExpression="subscriber, deviceId",
        )
        return [
            Subscription(i["subscriber"]["S"], i["deviceId"]["S"]) for i in query_items(self.ddb, request)
        ]

    def watch(self, subscriber: str, device_id: str, targets: list[str], expires_at: int) -> None:
        """The device watches exactly `targets` until `expires_at`: one SUB item per target, and the
        device's WATCH list (deleted when empty)."""
        self._batch_write(
            {
                "PutRequest": {
                    "Item": {
                        **self._key(target, SUB.sk(subscriber, device_id)),
                        "subscriber": av(subscriber),
                        "deviceId": av(device_id),
                        "expiresAt": av(expires_at),
                    }
                }
            }
            for target in targets
        )
        key = self._key(subscriber, WATCH.sk(device_id))
        if targets:
            item = {**key, "targets": av(set(targets)), "expiresAt": av(expires_at)}
            self.ddb.put_item(TableName=self.table, Item=item)
        else:
            self.ddb.delete_item(TableName=self.table, Key=key)

    def unwatch(self, subscriber: str, device_id: str, targets: Iterable[str]) -> None:
        """Delete the device's SUB items on these users (its WATCH list is rewritten by `watch`)."""
        self._batch_write(
            {"DeleteRequest": {"Key": self._key(target, SUB.sk(subscriber, device_id))}} for target in targets
        )

    def drop_subscriber(self, user_id: str, subscriber: str) -> None:
        """Delete every device's subscription of `subscriber` on `user_id` (a block ends them)."""
        request = SUB.query(
            self.table, ("userId", user_id), subscriber, ProjectionExpression="sk", ConsistentRead=True
        )
        keys = [i["sk"]["S"] for i in query_items(self.ddb, request)]
        self._batch_write({"DeleteRequest": {"Key": self._key(user_id, sk)}} for sk in keys)

    def watched_by(self, subscriber: str, device_id: str, now_s: int) -> list[str]:
        """Whom the device watches now ([] once its WATCH list expired, even before TTL deletes it)."""
        resp = self.ddb.get_item(
            TableName=self.table, Key=self._key(subscriber, WATCH.sk(device_id)), ConsistentRead=True
        )
        item = resp.get("Item")
        if not item or int(item["expiresAt"]["N"]) <= now_s:
            return []
        return sorted(item["targets"]["SS"])

    # --- helpers ---------------------------------------------------------------------------------

    def _state_update(self, user_id: str, update: str, **values: Any) -> dict[str, Any]:
        """An UpdateItem request of the user's STATE item: `update` ("#s" is the status, `values`
        are named without their colon) and the version bump of every write."""
        return {
            "TableName": self.table,
            "Key": self._key(user_id, STATE),
            "UpdateExpression": f"{update}, version = if_not_exists(version, :zero) + :one",
            "ExpressionAttributeNames": {"#s": "status"},
            "ExpressionAttributeValues": {
                f":{name}": av(v) for name, v in (values | {"zero": 0, "one": 1}).items()
            },
        }

    @staticmethod
    def _key(user_id: str, sk: str) -> dict[str, Any]:
        return {"userId": av(user_id), "sk": av(sk)}

    def _batch_write(self, requests: Iterable[dict[str, Any]]) -> None:
        batch_write(self.ddb, self.table, list(requests))


class SettleQueue(FifoQueue):
    """The presence-settle queue (SQS FIFO with a queue delay): a job to settle one user's status
    once the grace has passed. Jobs with the same `dedup_key` for a user coalesce (SQS drops the
    repeats for 5 minutes)."""

    def schedule(self, user_id: str, dedup_key: str) -> None:
        self.send([QueuedMessage(user_id, f"{user_id}:{dedup_key}", json.dumps({"userId": user_id}))])


def settle_job_user(body: str) -> str:
    """The user a settle job is about."""
    return str(json.loads(body)["userId"])
