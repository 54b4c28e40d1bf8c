"""Printing shared by the benchmark runs."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


def percentiles(values: list[float], ps: tuple[int, ...] = (50, 95, 99)) -> dict[int, float]:
    return {p: round(percentile(values, p), 1) for p in ps}


def p50_p95_p99(ms: dict[int, float]) -> str:
    """Latency percentiles (from `percentiles`) as the runs' headlines print them."""
    return f"p50 {ms[50]} p95 {ms[95]} p99 {ms[99]} ms"


def p50_p99(ms: dict[int, float]) -> str:
    return f"p50 {ms[50]} p99 {ms[99]} ms"


def gateway_latencies_ms(
    writes: dict[str, dict[int, list[float]]], sent_at: dict[tuple[str, int], float]
) -> list[float]:
    """Per delivered frame: from the client's send to the gateway writing it to a recipient."""
    return [
        (at - sent) * 1000
        for (chat_id, seq), sent in sent_at.items()
        for at in writes.get(chat_id, {}).get(seq, [])
    ]


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_snapshot(pids: dict[str, int]) -> dict[str, float]:
    return {name: cpu_seconds(pid) for name, pid in pids.items()}


class CpuMeter:
    """The CPU each of the stack's processes (and this one) used over a run, in cores."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids | {"bench client": os.getpid()}
        self.before = cpu_snapshot(self.pids)

    def cores_used(self, elapsed_s: float) -> dict[str, float]:
        after = cpu_snapshot(self.pids)
        return {k: round((after[k] - self.before[k]) / elapsed_s, 2) for k in self.pids}


def print_details(row: dict[str, Any], calls_key: str | None = None, calls_label: str = "") -> None:
    """The lines under a run's headline: AWS calls by operation, CPU by process, functions."""
    if calls_key is not None:
        print(f"    calls per {calls_label}:", json.dumps(row[calls_key]))
    print("    CPU cores used by process:", json.dumps(row["cpu_cores_used"]))
    print_function_profile(row["function_profile"])


def print_function_profile(profile: dict[str, dict[str, Any]]) -> None:
    """One line per function: invocations and duration percentiles, as the stack's stats give them."""
    for fn, prof in sorted(profile.items()):
        print(
            f"    {fn:<16} {prof['count']:>6} invocations, p50 {prof['p50_ms']:>8.2f} ms, "
            f"p99 {prof['p99_ms']:>8.2f} ms, total {prof['total_ms'] / 1000:>6.1f} s"
        )
