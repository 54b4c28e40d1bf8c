"""Presence: ONLINE while any device of the user is connected and heartbeating, OFFLINE with
`lastSeen` once the last one has gone; pushed only to the devices subscribed to the user, and
visible only to users they opened it to (logic/consent.py `presence_visible`: a direct chat the
user chose, and no block).

A user's status is a lease: connect and every heartbeat renew it for `LEASE_S`; the disconnect of
the last device shortens it to `PRESENCE_GRACE_S` and schedules a settle job that runs after the
grace and turns the user OFFLINE (and pushes it) only if nobody came back. So a heartbeat that
lapses without a $disconnect still reads OFFLINE, and a device that flaps between connected and
disconnected within the grace pushes nothing at all. Pushes happen only on a change of the
announced status, straight from the function that made it; a failed one is retried through the
delivery queue only while that status is still the user's (its version), so it never lands after
a newer one.
"""

from __future__ import annotations

from concurrent.futures import Executor

from chat_backend import wiring
from chat_backend.dal.chat_store import ChatStore
from chat_backend.dal.connection_poster import ConnectionPoster
from chat_backend.dal.presence_store import PresenceState, PresenceStore, SettleQueue
from chat_backend.errors import BadRequest, ConnectionGone, Forbidden
from chat_backend.logic.audience import recipients_of
from chat_backend.logic.consent import presence_visible
from chat_backend.logic.push import Pusher
from chat_backend.models.client_frames import MAX_PRESENCE_USERS, PresenceFrame
from chat_backend.models.common import iso_at
from chat_backend.models.events import Caller
from chat_backend.models.queue_payloads import PresenceGuard
from chat_backend.models.server_frames import OkFrame, PresenceNoticeFrame

# A connect or heartbeat keeps the user ONLINE this long: above the SDK's 4-minute heartbeat,
# below API Gateway's 10-minute idle timeout (which closes a silent connection and fires $disconnect).
LEASE_S = 6 * 60
SUBSCRIPTION_S = 10 * 60  # PROTOCOL.md: renewed by heartbeat or by subscribing again
MAX_WATCHED = MAX_PRESENCE_USERS  # users one device may watch at once (a heartbeat renews them all)
# Settle jobs run this long after they are scheduled (the queue's delay), a margin past the grace.
SETTLE_DELAY_S = wiring.queue("presence_settle").delay_s
# Jobs scheduled within the same slot of this length coalesce into the first of them. That one
# still runs after every grace begun in its slot has ended (it is due at least SETTLE_DELAY_S after
# the slot starts; the graces end at most PRESENCE_GRACE_S after it ends), so a user flapping
# costs at most one job per slot, however fast it flaps.
SETTLE_SLOT_S = (SETTLE_DELAY_S - wiring.PRESENCE_GRACE_S) / 2


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


def notice_of(user_id: str, state: PresenceState | None, now: float) -> PresenceNoticeFrame:
    """The status as a reader sees it at `now`: ONLINE only while the lease runs, whatever was
    announced (a heartbeat that lapsed without a $disconnect reads OFFLINE)."""
    if state is None:
        return PresenceNoticeFrame(user_id=user_id, status="OFFLINE", last_seen=None)
    online = state.status == "ONLINE" and state.lease_until_ms > _ms(now)
    return PresenceNoticeFrame(
        user_id=user_id,
        status="ONLINE" if online else "OFFLINE",
        last_seen=iso_at(state.last_active_ms / 1000),
    )


# --- status changes ------------------------------------------------------------------------------


def renew(presence: PresenceStore, pusher: Pusher, user_id: str, now: float) -> bool:
    """A device connected or heartbeated: the user is ONLINE for another lease. Pushes ONLINE
    only if the user read OFFLINE until now (a return within the grace pushes nothing).
    Returns whether it pushed."""
    before = presence.renew_lease(user_id, _ms(now), _ms(now + LEASE_S))
    if notice_of(user_id, before, now).status == "ONLINE":
        return False
    version = before.version + 1 if before else 1
    after = PresenceState(user_id, "ONLINE", _ms(now + LEASE_S), _ms(now), version)
    return push(presence, pusher, after, now)


def device_left(
    presence: PresenceStore,
    settle_queue: SettleQueue,
    user_id: str,
    remaining: dict[str, str] | None,
    now: float,
) -> None:
    """A device's connection closed at `now` (taken before it was unregistered), leaving the user's
    `remaining` devices (None: the connection had already been replaced, nothing changed). When it
    was the last, the lease ends after the grace and a settle job is scheduled for then."""
    if remaining is None or remaining:
        return
    grace_until_ms = _ms(now + wiring.PRESENCE_GRACE_S)
    state = presence.start_grace(user_id, _ms(now), grace_until_ms)
    # Not when a device came back meanwhile (its lease runs past the grace) or nothing is announced.
    if state is not None and state.status == "ONLINE" and state.lease_until_ms <= grace_until_ms:
        schedule_settle(settle_queue, user_id, now)


def schedule_settle(settle_queue: SettleQueue, user_id: str, now: float) -> None:
    settle_queue.schedule(user_id, dedup_key=str(int(now // SETTLE_SLOT_S)))


def settle(
    presence: PresenceStore,
    pusher: Pusher,
    settle_queue: SettleQueue,
    user_id: str,
    now: float,
) -> bool:
    """The settle job, after the grace: OFFLINE (and pushed) only if the lease has ended and no
    device is connected, and only if nothing changed the state since it was read. Returns
    whether it pushed. A job that finds the user back, or already OFFLINE, does nothing."""
    state = presence.state_of(user_id)
    if state is None or state.status == "OFFLINE":
        return False
    if pusher.registry.devices_of([user_id]):
        return False  # a device is back; its heartbeats keep the lease (and its disconnect settles)
    if state.lease_until_ms > _ms(now):
        # Still in a grace (a clock ahead of ours, or a later disconnect whose job coalesced into
        # this one): look again after it.
        schedule_settle(settle_queue, user_id, now)
        return False
    if not presence.mark_offline(state):
        return False  # a connect or another disconnect wrote first; it decides (and has its own job)
    offline = PresenceState(user_id, "OFFLINE", state.lease_until_ms, state.last_active_ms, state.version + 1)
    return push(presence, pusher, offline, now)


def push(presence: PresenceStore, pusher: Pusher, state: PresenceState, now: float) -> bool:
    """PRESENCE to the devices subscribed to the user now, on their current connections. A retry
    of a failed one carries the state's version and is dropped once the state has moved on."""
    subscriptions = {(s.subscriber, s.device_id) for s in presence.subscribers(state.user_id, int(now))}
    if not subscriptions:
        return False
    watchers = sorted({user for user, _ in subscriptions})
    recipients = [
        r
        for r in recipients_of(watchers, pusher.registry.devices_of(watchers), state.user_id, None)
        if (r.user_id, r.device_id) in subscriptions
    ]
    notice = notice_of(state.user_id, state, now).to_json()
    pusher.push(notice, recipients, presence=PresenceGuard(user_id=state.user_id, version=state.version))
    return bool(recipients)


# --- subscriptions -------------------------------------------------------------------------------


def subscribe(
    store: ChatStore,
    presence: PresenceStore,
    poster: ConnectionPoster,
    pool: Executor,
    caller: Caller,
    frame: PresenceFrame,
    now: float,
) -> OkFrame | None:
    """Watch `subscribe`, stop watching `unsubscribe`; answer at once with one PRESENCE per newly
    (re)subscribed user, posted on the caller's connection (each echoing the frame's requestId;
    with nothing to show, a frame with a requestId is answered OK). A user whose presence is not
    open to the caller (a stranger, a chat someone forced on them, a block) makes the whole frame
    FORBIDDEN, with nothing changed, whether that user exists or not."""
    wanted = list(dict.fromkeys(frame.subscribe))
    dropped = set(frame.unsubscribe)
    if dropped.intersection(wanted):
        raise BadRequest("a user is in both subscribe and unsubscribe")
    if len(presence_visible(store, pool, caller.user_id, wanted)) < len(wanted):
        raise Forbidden("presence of a user who has not opened it to you")
    watched = [u for u in presence.watched_by(caller.user_id, caller.device_id, int(now)) if u not in dropped]
    targets = list(dict.fromkeys([*watched, *wanted]))
    if len(targets) > MAX_WATCHED:
        raise BadRequest(f"a device watches at most {MAX_WATCHED} users; unsubscribe some first")
    presence.unwatch(caller.user_id, caller.device_id, dropped)
    # Renews the ones already watched too: a new subscription should not outlive the others.
    presence.watch(caller.user_id, caller.device_id, targets, int(now) + SUBSCRIPTION_S)
    # Read after the subscriptions are stored: a change after this read is pushed, one before it is
    # in the answer (a change in between arrives both ways: the same status twice, nothing lost).
    states = presence.states_of(wanted)
    for user_id in wanted:
        notice = notice_of(user_id, states.get(user_id), now).model_copy(
            update={"request_id": frame.request_id}
        )
        try:
            poster.post(caller.connection_id, notice.to_json())
        except ConnectionGone:
            return None  # the caller left; nobody to answer
    if not wanted and frame.request_id is not None:
        return OkFrame(request_id=frame.request_id)
    return None


def renew_subscriptions(
    store: ChatStore, presence: PresenceStore, pool: Executor, caller: Caller, now: float
) -> int:
    """A heartbeat: the device's subscriptions live another `SUBSCRIPTION_S`, except those on users
    whose presence is no longer open to the caller, which end. Returns how many were renewed."""
    watched = presence.watched_by(caller.user_id, caller.device_id, int(now))
    if not watched:
        return 0
    visible = presence_visible(store, pool, caller.user_id, watched)
    presence.unwatch(caller.user_id, caller.device_id, [u for u in watched if u not in visible])
    targets = [u for u in watched if u in visible]
    presence.watch(caller.user_id, caller.device_id, targets, int(now) + SUBSCRIPTION_S)
    return len(targets)


def heartbeat(
    store: ChatStore,
    presence: PresenceStore,
    pusher: Pusher,
    caller: Caller,
    now: float,
) -> None:
    """A device is alive: renew the user's lease and the device's subscriptions."""
    renew(presence, pusher, caller.user_id, now)
    renew_subscriptions(store, presence, pusher.pool, caller, now)
