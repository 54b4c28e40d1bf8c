"""The end-to-end suite: the integration scenarios that need nothing but the WebSocket, run against
a running stack named by the environment. Skipped entirely when it is not configured.

Environment:
- CHAT_WS_URL: the stage's WebSocket URL (wss://<api>.execute-api.<region>.amazonaws.com/<stage>,
  or ws://127.0.0.1:8080/ for `make run`). Required.
- Tokens, one of:
  - CHAT_JWT_SECRET: mint HS256 tokens locally (the local stack), device in the token;
  - CHAT_USER_POOL_ID and CHAT_USER_POOL_CLIENT_ID: throwaway Cognito users (AdminCreateUser,
    AdminSetUserPassword, then AdminInitiateAuth with ADMIN_USER_PASSWORD_AUTH for an ID token),
    deleted at the end of the session; the device goes in the `device` query parameter. AWS
    credentials and region come from the usual AWS_* variables / profile.
- LOCALSTACK_HOST (host:port): the Cognito calls go to LocalStack (localstack-client's session).
"""

from __future__ import annotations

import os
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pytest

from chat_client import ChatClient, mint_token
from tests.integration.helpers import connecting

E2E_DIR = Path(__file__).resolve().parent
TOKEN_REFRESH_MARGIN_S = 300  # fetch a new ID token when the cached one expires within this


class Tokens(Protocol):
    """Where users and their tokens come from: the local secret or a Cognito user pool."""

    def new_user(self, name: str) -> str: ...

    def token(self, user_id: str, device: str) -> str: ...

    def device_param(self, device: str) -> str | None: ...

    def close(self) -> None: ...


@dataclass
class LocalTokens:
    """HS256 tokens signed with the stack's secret: any user id, the device in the token."""

    secret: str

    def new_user(self, name: str) -> str:
        return f"{name}_{uuid.uuid4().hex[:8]}"

    def token(self, user_id: str, device: str) -> str:
        return mint_token(user_id, device, secret=self.secret)

    def device_param(self, device: str) -> str | None:
        return None

    def close(self) -> None:
        pass


@dataclass
class CognitoTokens:
    """Throwaway users in the stage's user pool. A user id is the user's `sub`, which is what the
    authorizer takes from the ID token; the username only matters to Cognito."""

    idp: Any  # a cognito-idp client
    pool_id: str
    client_id: str
    run: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    _users: dict[str, tuple[str, str]] = field(default_factory=dict)  # sub -> (username, password)
    _tokens: dict[str, tuple[str, float]] = field(default_factory=dict)  # sub -> (ID token, expiry)

    def new_user(self, name: str) -> str:
        username = f"e2e-{self.run}-{name}-{uuid.uuid4().hex[:8]}"
        password = f"Aa1!{secrets.token_urlsafe(24)}"
        created = self.idp.admin_create_user(
            UserPoolId=self.pool_id, Username=username, MessageAction="SUPPRESS"
        )
        self.idp.admin_set_user_password(
            UserPoolId=self.pool_id, Username=username, Password=password, Permanent=True
        )
        sub = next(a["Value"] for a in created["User"]["Attributes"] if a["Name"] == "sub")
        self._users[sub] = (username, password)
        return str(sub)

    def token(self, user_id: str, device: str) -> str:
        cached = self._tokens.get(user_id)
        if cached is not None and cached[1] - TOKEN_REFRESH_MARGIN_S > time.time():
            return cached[0]
        username, password = self._users[user_id]
        result = self.idp.admin_initiate_auth(
            UserPoolId=self.pool_id,
            ClientId=self.client_id,
            AuthFlow="ADMIN_USER_PASSWORD_AUTH",
            AuthParameters={"USERNAME": username, "PASSWORD": password},
        )["AuthenticationResult"]
        self._tokens[user_id] = (result["IdToken"], time.time() + int(result["ExpiresIn"]))
        return str(result["IdToken"])

    def device_param(self, device: str) -> str | None:
        return device  # ID tokens carry no device claim

    def close(self) -> None:
        for username, _ in self._users.values():
            self.idp.admin_delete_user(UserPoolId=self.pool_id, Username=username)
        self._users.clear()


def _boto3_session() -> Any:
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if os.environ.get("LOCALSTACK_HOST"):
        from localstack_client.session import Session  # the e2e extra; only needed for LocalStack

        return Session(region_name=region or "us-east-1")
    import boto3

    return boto3.session.Session(region_name=region)


def configured_tokens() -> Tokens | None:
    """The token source the environment names, or None when the suite is not configured."""
    if not os.environ.get("CHAT_WS_URL"):
        return None
    if secret := os.environ.get("CHAT_JWT_SECRET"):
        return LocalTokens(secret)
    pool_id, client_id = os.environ.get("CHAT_USER_POOL_ID"), os.environ.get("CHAT_USER_POOL_CLIENT_ID")
    if pool_id and client_id:
        return CognitoTokens(_boto3_session().client("cognito-idp"), pool_id, client_id)
    return None


NOT_CONFIGURED = (
    "end-to-end suite not configured: set CHAT_WS_URL and either CHAT_JWT_SECRET or "
    "CHAT_USER_POOL_ID + CHAT_USER_POOL_CLIENT_ID (see tests/e2e/README.md)"
)


def _is_e2e(item: pytest.Item) -> bool:
    return E2E_DIR in Path(str(item.fspath)).resolve().parents


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Collected and skipped (not "no tests collected"), so `make test` stays green without a stage.
    configured = bool(os.environ.get("CHAT_WS_URL")) and (
        bool(os.environ.get("CHAT_JWT_SECRET"))
        or bool(os.environ.get("CHAT_USER_POOL_ID") and os.environ.get("CHAT_USER_POOL_CLIENT_ID"))
    )
    for item in items:
        if _is_e2e(item):
            item.add_marker(pytest.mark.e2e)
            item.add_marker(pytest.mark.timeout(180))  # a real stage: cold starts, the internet
            if not configured:
                item.add_marker(pytest.mark.skip(reason=NOT_CONFIGURED))


@dataclass(frozen=True)
class Target:
    """What the scenarios know of the stack: its URL (they take it as `stack`, like the local one)."""

    url: str


@pytest.fixture(scope="session")
def tokens() -> Iterator[Tokens]:
    source = configured_tokens()
    if source is None:
        pytest.skip(NOT_CONFIGURED)
    yield source
    source.close()


@pytest.fixture(scope="session")
def stack(tokens: Tokens) -> Target:
    return Target(url=os.environ["CHAT_WS_URL"])


@pytest.fixture
def new_user(tokens: Tokens) -> Callable[[str], str]:
    """A fresh user per call, so tests never see each other's chats (a Cognito user when on AWS)."""
    return tokens.new_user


@pytest.fixture
async def connect(stack: Target, tokens: Tokens) -> AsyncIterator[Callable[..., object]]:
    def client_of(user: str, device: str, **options: Any) -> ChatClient:
        return ChatClient(
            stack.url, lambda: tokens.token(user, device), device=tokens.device_param(device), **options
        )

    async with connecting(client_of) as connect:
        yield connect
