"""Rate limits: token buckets per user and per connection for every route (wiring.RATE_LIMITS), held
in DynamoDB so that they hold across every Lambda instance (dal/limit_store.py).

Each bucket is kept as the generic cell rate algorithm keeps it: one number, the theoretical
arrival time (TAT) at which the bucket would be full again. A call of cost n at `now` fits when
max(TAT, now) + n * interval - now <= burst * interval, and moves TAT there; otherwise it waits
for the difference (RATE_LIMITED's `retryAfterMs`). All parties of a call (the user, the
connection, a chat's typing notices) live in one item and move in one conditional write.

Cost per call: one UpdateItem of 1 write unit ($0.625 per million at on-demand list price) and a
DynamoDB round trip before the route's work. A call that the function already knows to be over the
limit (from the bucket it last saw: a TAT never goes back) is refused with no AWS call at all, so
a flood costs nothing in DynamoDB.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from chat_backend.dal.limit_store import LimitRaced, LimitStore, Step
from chat_backend.errors import RateLimited
from chat_backend.wiring import Rate, RouteLimit

# DynamoDB's TTL deletes a bucket item this long after its last write: far beyond the longest
# refill of any bucket, so an item is only deleted once it is the same as no item (all full).
LIMIT_ITEM_TTL_S = 3600
# Writers racing on one bucket: tries before the call is refused for a moment.
MAX_WRITE_ATTEMPTS = 4
RACE_RETRY_AFTER_MS = 50


@dataclass(frozen=True)
class Party:
    """Who a bucket limits (attribute `attr` of the item), at what rate, and what this call costs."""

    attr: str
    rate: Rate
    cost: int = 1

    @property
    def interval_ms(self) -> int:
        return max(1, round(1000 / self.rate.per_s))

    @property
    def capacity_ms(self) -> int:
        return self.rate.burst * self.interval_ms


def wait_ms(parties: list[Party], tats: dict[str, int], now_ms: int) -> int | None:
    """None when the call fits every party's bucket, else how long until it would."""
    worst = 0
    for party in parties:
        start = max(tats.get(party.attr, 0), now_ms)
        worst = max(worst, start + party.cost * party.interval_ms - now_ms - party.capacity_ms)
    return worst if worst > 0 else None


class RateLimiter:
    def __init__(
        self, store: LimitStore, clock: Callable[[], float] = time.time, memory: int = 10_000
    ) -> None:
        self.store = store
        self.clock = clock
        self.memory = memory
        self._seen: OrderedDict[tuple[str, str], dict[str, int]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, key: str, bucket: str, parties: list[Party]) -> None:
        """Spend the call's cost from every party's bucket, or raise RateLimited (nothing spent)."""
        now_ms = int(self.clock() * 1000)
        tats = self._last_seen(key, bucket)
        for _ in range(MAX_WRITE_ATTEMPTS):
            if (wait := wait_ms(parties, tats, now_ms)) is not None:
                raise RateLimited(f"too many {bucket} requests; try again later", retry_after_ms=wait)
            mine = {p.attr for p in parties}
            steps = [
                Step(
                    attr=p.attr,
                    add_ms=p.cost * p.interval_ms,
                    full=tats.get(p.attr, 0) <= now_ms,
                    max_tat=now_ms + p.capacity_ms - p.cost * p.interval_ms,
                )
                for p in parties
            ]
            spent = [attr for attr, tat in tats.items() if tat <= now_ms and attr not in mine]
            try:
                tats = self.store.advance(
                    key, bucket, steps, spent, now_ms, now_ms // 1000 + LIMIT_ITEM_TTL_S
                )
                self._remember(key, bucket, tats)
                return
            except LimitRaced as raced:  # another instance moved it, or it is over: decide again
                tats = raced.tats
                self._remember(key, bucket, tats)
        raise RateLimited(f"too many {bucket} requests at once", retry_after_ms=RACE_RETRY_AFTER_MS)

    def _last_seen(self, key: str, bucket: str) -> dict[str, int]:
        with self._lock:
            return dict(self._seen.get((key, bucket), {}))

    def _remember(self, key: str, bucket: str, tats: dict[str, int]) -> None:
        with self._lock:
            self._seen[(key, bucket)] = tats
            self._seen.move_to_end((key, bucket))
            while len(self._seen) > self.memory:
                self._seen.popitem(last=False)


class RouteGuard:
    """Applies a route's limits (wiring.RATE_LIMITS) to a caller before the route's work."""

    def __init__(self, limiter: RateLimiter, limits: dict[str, RouteLimit]) -> None:
        self.limiter = limiter
        self.limits = limits

    def admit(
        self, route_key: str, user_id: str, connection_id: str | None, chat_id: str | None = None
    ) -> None:
        limit = self.limits.get(route_key)
        if limit is None:
            return
        parties = [Party("u", limit.user)]
        if limit.connection is not None and connection_id is not None:
            parties.append(Party(f"c:{connection_id}", limit.connection))
        if limit.per_chat is not None and chat_id is not None:
            parties.append(Party(f"t:{chat_id}", limit.per_chat))
        self.limiter.take(f"u#{user_id}", limit.bucket, parties)

    def is_silent(self, route_key: str) -> bool:
        """Frames of this route over the limit are dropped without an answer."""
        limit = self.limits.get(route_key)
        return limit is not None and limit.silent
