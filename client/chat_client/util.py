"""Small pure helpers: connection URL, retry backoff."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote


def build_url(url: str, token: str, device: str | None = None) -> str:
    """``url`` with ``token=<token>`` (and ``device=<device>`` if given) appended as query parameters
    (``&`` if it already has a query)."""
    base, _, fragment = url.partition("#")
    sep = "&" if "?" in base else "?"
    if base.endswith(("?", "&")):
        sep = ""
    out = f"{base}{sep}token={quote(token, safe='')}"
    if device is not None:
        out += f"&device={quote(device, safe='')}"
    return f"{out}#{fragment}" if fragment else out


def backoff_delay(attempt: int, low: float, high: float, rand: Callable[[], float] = random.random) -> float:
    """Exponential backoff with full jitter: uniform in [low, min(high, low * 2**attempt)]."""
    cap = min(high, low * (2 ** min(attempt, 32)))
    cap = max(cap, low)
    return low + (cap - low) * rand()


@dataclass(frozen=True)
class Backoff:
    """A range of retry delays, from ``low`` up to ``high`` (a ``high`` below ``low`` counts as ``low``)."""

    low: float
    high: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "high", max(self.high, self.low))

    def jittered(self, attempt: int) -> float:
        """The delay before retry ``attempt`` (counted from 0): ``backoff_delay`` over the range."""
        return backoff_delay(attempt, self.low, self.high)

    def doubled(self, delay: float) -> float:
        """The delay after ``delay`` while nothing changes: twice as long, within the range."""
        return min(max(delay * 2, self.low), self.high)
