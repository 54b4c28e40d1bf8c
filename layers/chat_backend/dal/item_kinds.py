"""How the tables name their kinds of items (one place for every sort-key scheme).

A kind's sort keys are its prefix and then the item's id parts joined by `#` (user, device and
chat ids never contain `#`: models.Id). So one begins_with condition finds every item of a kind
in a partition, or those of it under their first id parts (one device's one-time prekeys).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chat_backend.dal.aws import av


@dataclass(frozen=True)
class ItemKind:
    prefix: str  # ends with "#"

    def sk(self, *parts: str | int) -> str:
        return self.prefix + "#".join(str(part) for part in parts)

    def under(self, *parts: str) -> str:
        """The sort-key prefix of this kind's items whose ids begin with `parts`."""
        return self.sk(*parts, "") if parts else self.prefix

    def id_in(self, sk: str) -> str:
        """The id parts of one of this kind's sort keys, as they were joined."""
        return sk.removeprefix(self.prefix)

    def query(self, table: str, partition: tuple[str, str], *parts: str, **request: Any) -> dict[str, Any]:
        """A Query request for this kind's items in the partition (`partition`: key attribute and
        value), those under `parts` when given; `request` adds the rest (projection, filter and
        its values, limit, consistency)."""
        attr, value = partition
        values = {":pk": av(value), ":prefix": av(self.under(*parts))}
        return {
            "TableName": table,
            "KeyConditionExpression": f"{attr} = :pk AND begins_with(sk, :prefix)",
            **request,
            "ExpressionAttributeValues": values | request.get("ExpressionAttributeValues", {}),
        }
