"""What the local gateway's APIs (websocket_api.py, connections_api.py, http_api.py) share, as
API Gateway has them: the API's ids, request and connection ids, request times, and (aws timing)
API Gateway's own time between a request and its route's invocation."""

from __future__ import annotations

import asyncio
import base64
import secrets
import time
from datetime import UTC, datetime

from local_stack.timing import TimingProfile

API_ID = "local"
STAGE = "local"
ACCOUNT = "000000000000"


def now_ms() -> int:
    return int(time.time() * 1000)


def request_time(at: datetime | None = None) -> str:
    """A request time as API Gateway's events write it."""
    return (at or datetime.now(UTC)).strftime("%d/%b/%Y:%H:%M:%S +0000")


def new_id() -> str:
    # API Gateway's connection ids look like "L0SM9cOFvHcCIhw=".
    return base64.b64encode(secrets.token_bytes(10)).decode().replace("/", "_").replace("+", "-")


async def route_overhead(timing: TimingProfile) -> None:
    """API Gateway's own time between a client's frame or request and the route's invocation
    (local_stack/timing.py ROUTE_OVERHEAD; nothing in the fast profile)."""
    if (overhead_s := timing.route_overhead_s()) > 0:
        await asyncio.sleep(overhead_s)
