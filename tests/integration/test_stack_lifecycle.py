"""`make run`'s process: it says where it listens, and stops cleanly, emulators included."""

from __future__ import annotations

import socket
from pathlib import Path
from urllib.parse import urlparse

from local_stack.child import start_local_stack


def accepts_connections(url: str) -> bool:
    parsed = urlparse(url)
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((parsed.hostname or "127.0.0.1", parsed.port or 80)) == 0


def test_sigterm_stops_the_stack_and_its_emulators(tmp_path: Path) -> None:
    # Given a second local stack running beside the session's one, on other free ports
    stack = start_local_stack(tmp_path / "stack.log")
    assert accepts_connections(stack.url)
    # (its startup line names the emulators, and the file its push notifications go to)
    assert set(stack.emulator_urls) == {"dynamodb-local", "moto", "push-log"}
    emulators = [url for name, url in stack.emulator_urls.items() if name != "push-log"]
    assert all(accepts_connections(url) for url in emulators)
    # When it gets SIGTERM
    code = stack.stop()
    # Then it exits cleanly and nothing listens any more: gateway, DynamoDB Local and moto are gone
    assert code == 0
    assert not accepts_connections(stack.url)
    assert not any(accepts_connections(url) for url in emulators)
