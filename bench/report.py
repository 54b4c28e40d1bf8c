"""Printing shared by the benchmark runs."""

from __future__ import annotations

from typing import Any


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


def print_function_profile(profile: dict[str, dict[str, Any]]) -> None:
    """One line per function: invocations and duration percentiles, as the stack's stats give them."""
    for fn, prof in sorted(profile.items()):
        print(
            f"    {fn:<16} {prof['count']:>6} invocations, p50 {prof['p50_ms']:>8.2f} ms, "
            f"p99 {prof['p99_ms']:>8.2f} ms, total {prof['total_ms'] / 1000:>6.1f} s"
        )
