"""One local stack for the whole integration session, driven through the SDK over real WebSockets."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from chat_client import ChatClient, mint_token
from local_stack.child import RunningStack, start_local_stack
from tests.integration.helpers import connecting

IDLE_TIMEOUT_S = 20
RECEIPTS_PAGE_SIZE = 2
STACK_LOG_LINES_SHOWN = 200


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    log = tmp_path_factory.mktemp("stack") / "local-stack.log"
    env = {
        "CHAT_IDLE_TIMEOUT_S": str(IDLE_TIMEOUT_S),
        # Small RECEIPTS pages, so a few receipting users are enough to see the query page.
        "CHAT_RECEIPTS_PAGE_SIZE": str(RECEIPTS_PAGE_SIZE),
    }
    running = start_local_stack(log, env)
    yield running
    running.stop()


@pytest.fixture
def new_user() -> Callable[[str], str]:
    """Unique user ids, so tests never see each other's chats."""
    return lambda name: f"{name}_{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def connect(stack: RunningStack) -> AsyncIterator[Callable[..., object]]:
    def client_of(user: str, device: str, **options: Any) -> ChatClient:
        return ChatClient(stack.url, mint_token(user, device, secret=stack.secret), **options)

    async with connecting(client_of) as connect:
        yield connect


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> pytest.TestReport:
    """A failed scenario's report ends with what the stack logged meanwhile: on CI the log's
    temporary directory is gone by the time anyone reads the failure."""
    report: pytest.TestReport = yield
    running = getattr(item, "funcargs", {}).get("stack")
    if report.failed and isinstance(running, RunningStack):
        lines = running.log_path.read_text(errors="replace").splitlines()
        report.sections.append(("local stack log (last lines)", "\n".join(lines[-STACK_LOG_LINES_SHOWN:])))
    return report


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).parent.name == "integration":
            item.add_marker(pytest.mark.timeout(120))
