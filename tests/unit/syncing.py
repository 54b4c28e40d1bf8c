"""Sends and syncs as the sync tests (test_sync_replay.py, test_sync_holes.py) make them: a send's
clientMsgId and bytes come from its text, and its policy gives a hole GRACE_S before sync voids it."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from chat_backend.logic.send import Ledger, SendPolicy, send_message
from chat_backend.models.client_frames import SendFrame, SyncFrame
from chat_backend.models.events import Caller
from tests.unit import helpers

GRACE_S = 5.0
POLICY = SendPolicy(dedup_ttl_s=3600, hole_grace_s=GRACE_S)


def send_frame(who: Caller, chat_id: str, text: str) -> SendFrame:
    """`text` sent by `who` under the clientMsgId <user>-<text>."""
    return helpers.send_frame(chat_id, f"{who.user_id}-{text}", text.encode())


def send(ledger: Ledger, who: Caller, chat_id: str, text: str, clock: Callable[[], float] = time.time) -> int:
    return send_message(ledger, who, send_frame(who, chat_id, text), POLICY, clock=clock).ack.seq


def sync_frame(cursors: dict[str, int] | None = None, limit: int | None = None) -> SyncFrame:
    data: dict[str, Any] = {"action": "sync", "requestId": "r1", "cursors": cursors or {}}
    if limit is not None:
        data["limit"] = limit
    return SyncFrame.model_validate(data)
