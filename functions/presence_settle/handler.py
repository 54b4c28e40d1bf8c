"""Placeholder while issue 3 is built: the wiring names this function; its logic lands next."""

from typing import Any


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    raise NotImplementedError("presence_settle")
