"""Rate limits: token buckets per user and per connection for every route (wiring.RATE_LIMITS), held
in DynamoDB so that they hold across every Lambda instance (dal/limit_store.py).

Each bucket is kept as the generic cell rate algorithm keeps it: one number, the theoretical
arrival time (TAT) at which the bucket would be full again. A call of cost n at `now` fits when
max(TAT, now) + n * interval - now <= burst * interval, and moves TAT there; otherwise it waits
for the difference (RATE_LIMITED's `retryAfterMs`). All parties of a call (the user, the
connection, a chat's typing notices) live in one item and move in one conditional write.

Cost: one conditional UpdateItem (1 write unit, $0.625 per million at on-demand list price) per
write, and a write settles up to `settle_every` calls (wiring.RouteLimit): an instance admits that
many calls of a party on its own view of the bucket (the TAT it last saw, plus what it admitted
since) and then writes them down at once. So the frequent, cheap frames (send, receipt, heartbeat,
sync: settled every 4 calls) cost at most 0.25 write units each and a person's occasional frame,
spread over warm instances, usually nothing; rare frames whose limit guards something scarce
(chats, members, keys, media, connects, typing's coalescing) settle every call. The price of
settling late: each instance may admit up to `settle_every - 1` calls of a party beyond its bucket
before it learns the bucket is empty (and calls admitted but not yet written down are forgotten if
the instance dies). A call the instance already knows to be over the limit (a TAT never goes
back) is refused with no AWS call at all, so a flood costs nothing in DynamoDB.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from chat_backend.dal.limit_store import LimitStore, Step
from chat_backend.errors import LimitRaced, RateLimited
from chat_backend.wiring import Rate, RouteLimit

# DynamoDB's TTL deletes a bucket item this long after its last write (longer when a bucket in it
# refills more slowly), so an item is only deleted once it is the same as no item (all full).
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


@dataclass
class _Bucket:
    """What one instance knows of a bucket item: the TATs it last saw, and what it admitted since
    without writing it down (per party: the milliseconds to add, and that party's capacity)."""

    tats: dict[str, int] = field(default_factory=dict)
    owed: dict[str, tuple[int, int]] = field(default_factory=dict)

    def view(self, now_ms: int) -> dict[str, int]:
        """The TATs as they stand with what is owed added."""
        seen = dict(self.tats)
        for attr, (add_ms, _) in self.owed.items():
            seen[attr] = max(seen.get(attr, 0), now_ms) + add_ms
        return seen


class RateLimiter:
    def __init__(
        self, store: LimitStore, clock: Callable[[], float] = time.time, memory: int = 10_000
    ) -> None:
        self.store = store
        self.clock = clock
        self.memory = memory
        self._known: OrderedDict[tuple[str, str], _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, key: str, bucket: str, parties: list[Party], settle_every: int = 1) -> None:
        """Spend the call's cost from every party's bucket, or raise RateLimited (nothing spent)."""
        now_ms = int(self.clock() * 1000)
        with self._lock:
            known = self._bucket(key, bucket)
            if (wait := wait_ms(parties, known.view(now_ms), now_ms)) is not None:
                raise RateLimited(f"too many {bucket} requests; try again later", retry_after_ms=wait)
            for p in parties:
                owed_ms, _ = known.owed.get(p.attr, (0, p.capacity_ms))
                known.owed[p.attr] = (owed_ms + p.cost * p.interval_ms, p.capacity_ms)
            if all(known.owed[p.attr][0] < settle_every * p.interval_ms for p in parties):
                return  # admitted on this instance's view; written down with a later call
            owed, known.owed = known.owed, {}
            tats = dict(known.tats)
        self._settle(key, bucket, parties, owed, tats, now_ms)

    def _settle(
        self,
        key: str,
        bucket: str,
        parties: list[Party],
        owed: dict[str, tuple[int, int]],
        tats: dict[str, int],
        now_ms: int,
    ) -> None:
        """Write what is owed (this call included). If the real bucket cannot take it all, what
        was admitted earlier on this instance's view is dropped and this call alone is decided."""
        for _ in range(MAX_WRITE_ATTEMPTS):
            steps = [
                Step(
                    attr=attr,
                    add_ms=add_ms,
                    full=tats.get(attr, 0) <= now_ms,
                    max_tat=now_ms + capacity - add_ms,
                )
                for attr, (add_ms, capacity) in owed.items()
            ]
            spent = [attr for attr, tat in tats.items() if tat <= now_ms and attr not in owed]
            # Kept at least until every bucket in it is full again (an expired item is a full one).
            ttl_s = max(LIMIT_ITEM_TTL_S, max(capacity for _, capacity in owed.values()) // 1000 + 60)
            try:
                tats = self.store.advance(key, bucket, steps, spent, now_ms, now_ms // 1000 + ttl_s)
                self._saw(key, bucket, tats)
                return
            except LimitRaced as raced:  # another instance moved it, or it is over: decide again
                tats = raced.tats
                self._saw(key, bucket, tats)
            if (wait := wait_ms(parties, tats, now_ms)) is not None:
                raise RateLimited(f"too many {bucket} requests; try again later", retry_after_ms=wait)
            if not _fits(owed, tats, now_ms):  # the calls admitted earlier went over: not recorded
                owed = {p.attr: (p.cost * p.interval_ms, p.capacity_ms) for p in parties}
        raise RateLimited(f"too many {bucket} requests at once", retry_after_ms=RACE_RETRY_AFTER_MS)

    def _bucket(self, key: str, bucket: str) -> _Bucket:
        """(Under the lock.) This instance's view of a bucket, the most recently used kept."""
        found = self._known.get((key, bucket))
        if found is None:
            found = self._known[(key, bucket)] = _Bucket()
            while len(self._known) > self.memory:
                self._known.popitem(last=False)
        self._known.move_to_end((key, bucket))
        return found

    def _saw(self, key: str, bucket: str, tats: dict[str, int]) -> None:
        with self._lock:
            self._bucket(key, bucket).tats = tats


def _fits(owed: dict[str, tuple[int, int]], tats: dict[str, int], now_ms: int) -> bool:
    return all(max(tats.get(a, 0), now_ms) + add - now_ms <= cap for a, (add, cap) in owed.items())


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
        self.limiter.take(f"u#{user_id}", limit.bucket, parties, limit.settle_every)

    def is_silent(self, route_key: str) -> bool:
        """Frames of this route over the limit are dropped without an answer."""
        limit = self.limits.get(route_key)
        return limit is not None and limit.silent
