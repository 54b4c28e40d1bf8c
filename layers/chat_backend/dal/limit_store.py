"""Rate-limit buckets in DynamoDB (the `limits` table): one item per scope and bucket, one attribute
per limited party holding its theoretical arrival time (TAT, epoch ms) of the generic cell rate
algorithm, which is a token bucket kept as a single number (logic/rate_limits.py).

One conditional UpdateItem moves every party of a call at once, so a call costs 1 write unit
(items stay far under 1 KB). DynamoDB cannot compute max(TAT, now) in an update, so each party
is written one of two ways, chosen by the caller from what it last saw: `SET a = :now + cost`
while the bucket is full (TAT in the past), `SET a = a + cost` while it is draining. A wrong guess
or a refusal fails the condition and returns the item as it is (no extra read), so the caller
decides from the real values. Parties whose TAT has passed carry nothing (a full bucket is the
same as no attribute): each write removes those it knows of, so an item never grows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chat_backend.dal.aws import TableStore, av
from chat_backend.dal.conditional import ConditionFailed, conditional
from chat_backend.errors import LimitRaced

KEY_ATTRS = frozenset({"key", "bucket", "expiresAt"})


@dataclass(frozen=True)
class Step:
    """Advance party `attr` by `add_ms`: from now when `full` (its TAT has passed), else from its TAT,
    which must then be at most `max_tat`."""

    attr: str
    add_ms: int
    full: bool
    max_tat: int


class LimitStore(TableStore):
    def advance(
        self, key: str, bucket: str, steps: list[Step], spent: list[str], now_ms: int, expires_at: int
    ) -> dict[str, int]:
        """Apply `steps` and drop the `spent` parties (TAT passed) in one write; the new TATs."""
        names: dict[str, str] = {}
        values: dict[str, Any] = {":now": av(now_ms), ":exp": av(expires_at)}
        sets, conditions, removes = ["expiresAt = :exp"], [], []
        for i, step in enumerate(steps):
            names[f"#a{i}"] = step.attr
            if step.full:
                values[f":n{i}"] = av(now_ms + step.add_ms)
                sets.append(f"#a{i} = :n{i}")
                conditions.append(f"(attribute_not_exists(#a{i}) OR #a{i} <= :now)")
            else:
                values[f":d{i}"], values[f":m{i}"] = av(step.add_ms), av(step.max_tat)
                sets.append(f"#a{i} = #a{i} + :d{i}")
                conditions.append(f"(#a{i} > :now AND #a{i} <= :m{i})")
        for i, attr in enumerate(spent):
            names[f"#s{i}"] = attr
            removes.append(f"#s{i}")
            conditions.append(f"(attribute_not_exists(#s{i}) OR #s{i} <= :now)")
        expression = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
        try:
            response = conditional(
                self.ddb.update_item,
                TableName=self.table,
                Key={"key": av(key), "bucket": av(bucket)},
                UpdateExpression=expression,
                ConditionExpression=" AND ".join(conditions),
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ConditionFailed as exc:
            raise LimitRaced(_tats(exc.item or {})) from exc
        return _tats(response.get("Attributes") or {})


def _tats(item: dict[str, Any]) -> dict[str, int]:
    return {name: int(value["N"]) for name, value in item.items() if name not in KEY_ATTRS and "N" in value}
