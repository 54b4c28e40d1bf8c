"""moto server, as `python -m moto.server`, with one speed fix for SQS.

moto's SQS computes queue attributes (approximate counts over every message) several times per
SendMessage, calling a datetime-based clock per message each time: a FIFO queue with a few hundred
messages then takes ~70 ms per message. The clock is swapped for `time.time`, which gives the same
values (seconds since the epoch) at a fraction of the cost; nothing else changes.
"""

from __future__ import annotations

import time
from datetime import datetime

from moto.server import main as moto_main
from moto.sqs import models as sqs_models


def _unix_time(dt: datetime | None = None) -> float:
    return time.time() if dt is None else _moto_unix_time(dt)


def _unix_time_millis(dt: datetime | None = None) -> float:
    return _unix_time(dt) * 1000.0


_moto_unix_time = sqs_models.unix_time

if __name__ == "__main__":
    sqs_models.unix_time = _unix_time  # type: ignore[assignment]
    sqs_models.unix_time_millis = _unix_time_millis  # type: ignore[assignment]
    moto_main()
