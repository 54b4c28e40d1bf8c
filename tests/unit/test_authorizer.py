"""authorizer (logic/auth.py + functions/authorizer): the $connect token becomes the identity."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest

from chat_backend import wiring
from chat_backend.errors import Unauthorized
from chat_backend.logic.auth import TokenVerifier, mint_local_token

SECRET = "authorizer-unit-test-secret-0123456789abcdef"
METHOD_ARN = "arn:aws:execute-api:us-east-1:123456789012:abc123defg/test/$connect"


def token(claims: dict[str, Any], secret: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, secret, algorithm)


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    values: dict[str, Any] = {"sub": "u_alice", "device": "d_phone", "iat": now, "exp": now + 600}
    values.update(overrides)
    return {k: v for k, v in values.items() if v is not None}


def authorizer_event(query: dict[str, str] | None) -> dict[str, Any]:
    # Shaped like powertools' sample apiGatewayAuthorizerWebSocketEvent.json.
    host = "abc123defg.execute-api.us-east-1.amazonaws.com"
    return {
        "type": "REQUEST",
        "methodArn": METHOD_ARN,
        "headers": {"Connection": "upgrade", "Host": host, "Upgrade": "websocket"},
        "multiValueHeaders": {"Connection": ["upgrade"], "Host": [host], "Upgrade": ["websocket"]},
        "queryStringParameters": query,
        "multiValueQueryStringParameters": {k: [v] for k, v in (query or {}).items()},
        "stageVariables": {},
        "requestContext": {
            "routeKey": "$connect",
            "eventType": "CONNECT",
            "extendedRequestId": "FDmBIG3EoAMEqYA=",
            "requestTime": "28/Nov/2026:03:21:07 +0000",
            "messageDirection": "IN",
            "stage": "test",
            "connectedAt": 1795836067123,
            "requestTimeEpoch": 1795836067123,
            "identity": {"sourceIp": "203.0.113.7"},
            "requestId": "FDmBIG3EoAMEqYA=",
            "domainName": host,
            "connectionId": "FDmBIeapIAMCIQg=",
            "apiId": "abc123defg",
        },
    }


@pytest.fixture
def verifier() -> TokenVerifier:
    return TokenVerifier(secret=SECRET)


@pytest.fixture
def authorize(
    monkeypatch: pytest.MonkeyPatch, handler_of: Callable[[str], Any], lambda_context: Any
) -> Callable[[dict[str, str] | None], dict[str, Any]]:
    """The authorizer function, configured like the local stack (HS256 with a shared secret)."""
    monkeypatch.setenv(wiring.JWT_SECRET_ENV, SECRET)
    handler = handler_of("authorizer")
    return lambda query: handler(authorizer_event(query), lambda_context)


# --- the verifier --------------------------------------------------------------------------------


def test_valid_token_gives_user_and_device(verifier: TokenVerifier) -> None:
    # Given a token for alice's phone signed with the shared secret
    # When it is verified
    identity = verifier.verify(token(claims()))
    # Then the identity is alice on her phone
    assert (identity.user_id, identity.device_id) == ("u_alice", "d_phone")


def test_locally_minted_token_verifies(verifier: TokenVerifier) -> None:
    # Given a token minted the way tests and the CLI mint them
    # When it is verified
    identity = verifier.verify(mint_local_token(SECRET, "u_bob", "d_tablet"))
    # Then it names bob's tablet
    assert (identity.user_id, identity.device_id) == ("u_bob", "d_tablet")


@pytest.mark.parametrize(
    "bad_token",
    [
        pytest.param(token(claims(exp=int(time.time()) - 60, iat=int(time.time()) - 120)), id="expired"),
        pytest.param(
            token(claims(), secret="some-other-secret-that-is-also-long-enough"), id="wrong-signature"
        ),
        pytest.param(None, id="missing"),
        pytest.param("", id="empty"),
        pytest.param("not-a-jwt", id="malformed"),
        pytest.param("a.b.c", id="malformed-segments"),
        pytest.param(token(claims())[:-4], id="truncated-signature"),
        pytest.param(token(claims(sub="u/alice")), id="sub-with-slash"),
        pytest.param(token(claims(sub="x" * 65)), id="sub-too-long"),
        pytest.param(token(claims(sub="")), id="sub-empty"),
        pytest.param(token(claims(sub="alice smith")), id="sub-with-space"),
        pytest.param(token(claims(sub=None)), id="no-sub"),
        pytest.param(token(claims(device="d/../1")), id="bad-device"),
        pytest.param(token(claims(exp=None)), id="no-exp"),
        pytest.param(jwt.encode(claims(), None, algorithm="none"), id="alg-none"),
    ],
)
def test_bad_token_is_unauthorized(bad_token: str | None, verifier: TokenVerifier) -> None:
    # Given a missing, malformed, expired, wrongly signed or ill-named token
    # When it is verified
    # Then it is refused as UNAUTHORIZED
    with pytest.raises(Unauthorized) as err:
        verifier.verify(bad_token)
    assert err.value.code == "UNAUTHORIZED"


def test_verifier_needs_a_secret_or_jwks() -> None:
    # Given no way to check signatures
    # When a verifier is built
    # Then it refuses to exist rather than accept any token
    with pytest.raises(ValueError):
        TokenVerifier()


# --- the authorizer function ---------------------------------------------------------------------


def test_authorizer_allows_a_valid_token_with_identity_in_context(
    authorize: Callable[[dict[str, str] | None], dict[str, Any]],
) -> None:
    # Given alice's laptop connects with a valid token
    # When the authorizer handles the $connect request
    policy = authorize({"token": token(claims(device="d_laptop"))})
    # Then it allows the API's routes to alice, passing userId/deviceId to every route
    assert policy["principalId"] == "u_alice"
    assert policy["context"] == {"userId": "u_alice", "deviceId": "d_laptop"}
    [statement] = policy["policyDocument"]["Statement"]
    assert statement["Effect"] == "Allow"
    assert statement["Action"] == "execute-api:Invoke"
    assert statement["Resource"] == ["arn:aws:execute-api:us-east-1:123456789012:abc123defg/test/*"]


@pytest.mark.parametrize(
    "query",
    [
        pytest.param(
            {"token": token(claims(exp=int(time.time()) - 1, iat=int(time.time()) - 60))}, id="expired"
        ),
        pytest.param(
            {"token": token(claims(), secret="not-the-secret-but-long-enough-anyway")}, id="wrong-sig"
        ),
        pytest.param({}, id="missing"),
        pytest.param(None, id="no-query-string"),
        pytest.param({"token": "garbage"}, id="malformed"),
        pytest.param({"token": token(claims(sub="../u_alice"))}, id="bad-sub"),
        pytest.param({"token": token(claims(sub="system"))}, id="reserved-sub"),
        pytest.param({"token": "\ud800"}, id="lone-surrogate"),
        pytest.param({"token": token({"sub": "u_alice"})}, id="no-exp"),
    ],
)
def test_authorizer_denies_bad_tokens_without_raising(
    query: dict[str, str] | None, authorize: Callable[[dict[str, str] | None], dict[str, Any]]
) -> None:
    # Given a $connect request with a bad or no token
    # When the authorizer handles it
    policy = authorize(query)
    # Then it returns a Deny policy (API Gateway answers 403, no connection exists) with no identity,
    # rather than raising: a raise would count as a function error for every stranger
    assert_denied(policy)


def assert_denied(policy: dict[str, Any]) -> None:
    [statement] = policy["policyDocument"]["Statement"]
    assert statement["Effect"] == "Deny"
    assert "context" not in policy or not policy["context"]


# --- the device id -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("device_claim", "device_param", "expected"),
    [
        pytest.param(None, "d_tablet", "d_tablet", id="no-claim-param"),
        pytest.param("d_phone", "d_tablet", "d_phone", id="claim-wins-over-param"),
        pytest.param("d_phone", None, "d_phone", id="claim-only"),
        pytest.param(None, None, "default", id="neither"),
    ],
)
def test_device_is_the_claim_else_the_query_parameter_else_default(
    verifier: TokenVerifier, device_claim: str | None, device_param: str | None, expected: str
) -> None:
    # Given a token with or without a `device` claim (Cognito ID tokens have none), and maybe a
    # `device` query-string parameter
    signed = token(claims(device=device_claim))
    # When it is verified
    identity = verifier.verify(signed, device_param)
    # Then the device is the claim, else the parameter, else "default"; the user is the token's
    assert (identity.user_id, identity.device_id) == ("u_alice", expected)


@pytest.mark.parametrize("bad_device", ["", "d/../1", "d 1", "x" * 65, "d\u00e9", "d1\n"])
def test_a_bad_device_parameter_is_unauthorized(verifier: TokenVerifier, bad_device: str) -> None:
    # Given a valid token without a device claim, and an ill-formed `device` parameter
    # When it is verified
    # Then it is refused as UNAUTHORIZED
    with pytest.raises(Unauthorized):
        verifier.verify(token(claims(device=None)), bad_device)


def test_authorizer_takes_the_device_from_the_query_string(
    authorize: Callable[[dict[str, str] | None], dict[str, Any]],
) -> None:
    # Given a token without a device claim, as Cognito issues them, and `device=d_laptop`
    # When the authorizer handles the $connect request
    policy = authorize({"token": token(claims(device=None)), "device": "d_laptop"})
    # Then the connection is alice's laptop
    assert policy["context"] == {"userId": "u_alice", "deviceId": "d_laptop"}


def test_authorizer_refuses_a_bad_device_parameter(
    authorize: Callable[[dict[str, str] | None], dict[str, Any]],
) -> None:
    # Given a valid token without a device claim, and a device id with a slash
    # When the authorizer handles the $connect request
    policy = authorize({"token": token(claims(device=None)), "device": "../d_other"})
    # Then it denies the connection (API Gateway answers 403)
    assert_denied(policy)
