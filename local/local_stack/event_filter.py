"""Lambda event filtering for the local pollers: a record is handed to the function only if it
matches the trigger's filter pattern, as on AWS (records that match nothing are dropped, and the
function is not invoked for them).

The subset the wiring uses: nested objects whose leaves are lists of allowed values.
"""

from __future__ import annotations

from typing import Any

from chat_backend.wiring import FilterPattern


def matches(pattern: FilterPattern | None, record: Any) -> bool:
    if pattern is None:
        return True
    if not isinstance(record, dict):
        return False
    for key, rule in pattern.items():
        if key not in record:
            return False
        value = record[key]
        if isinstance(rule, list):
            if isinstance(value, dict | list) or value not in rule:
                return False
        elif not matches(rule, value):
            return False
    return True
