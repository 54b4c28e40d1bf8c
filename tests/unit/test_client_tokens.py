"""Token minting, token identity, URL building and reconnect backoff of the SDK."""

import time

import jwt
import pytest

from chat_client import mint_token
from chat_client.tokens import token_identity
from chat_client.util import Backoff, backoff_delay, build_url

# The local stack's default HS256 secret is short by design (a dev secret).
pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")


def test_mint_token_round_trip():
    # Given a user, a device and a secret
    # When a token is minted
    before = int(time.time())
    token = mint_token("u_alice", "d_1", secret="s3cret", ttl_s=60)
    # Then it decodes with HS256 and that secret, carrying sub, device, iat and exp
    claims = jwt.decode(token, "s3cret", algorithms=["HS256"])
    assert claims["sub"] == "u_alice" and claims["device"] == "d_1"
    assert before <= claims["iat"] <= int(time.time())
    assert claims["exp"] == claims["iat"] + 60


def test_mint_token_default_secret_and_wrong_secret():
    # Given a token minted with the default local secret
    token = mint_token("u_bob", "d_2")
    # Then the local-dev secret verifies it and another secret does not
    assert jwt.decode(token, "local-dev-secret", algorithms=["HS256"])["sub"] == "u_bob"
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, "other", algorithms=["HS256"])


def test_token_identity_reads_claims_without_verifying():
    # Given a token signed with a secret the client does not know, and garbage
    # Then the identity is read from the former and unknown for the latter
    assert token_identity(mint_token("u_c", "d_c", secret="x")) == ("u_c", "d_c")
    assert token_identity("not-a-jwt") == (None, None)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ws://127.0.0.1:8080/", "ws://127.0.0.1:8080/?token=T.K.N"),
        ("ws://127.0.0.1:8080", "ws://127.0.0.1:8080?token=T.K.N"),
        (
            "wss://x.execute-api.eu-west-1.amazonaws.com/prod",
            "wss://x.execute-api.eu-west-1.amazonaws.com/prod?token=T.K.N",
        ),
        ("ws://h/?v=1", "ws://h/?v=1&token=T.K.N"),
        ("ws://h/?", "ws://h/?token=T.K.N"),
    ],
)
def test_build_url_appends_token(url, expected):
    # Given a URL with or without a query, When the token is appended, Then ? or & is used accordingly
    assert build_url(url, "T.K.N") == expected


def test_build_url_quotes_unsafe_characters():
    # Given a token with characters that are not URL-safe, Then they are percent-encoded
    assert build_url("ws://h/", "a+b/c=") == "ws://h/?token=a%2Bb%2Fc%3D"


def test_backoff_grows_exponentially_with_full_jitter_and_is_capped():
    # Given min 0.2 and max 10
    # Then the upper bound doubles per attempt up to the max, and the lower bound is the min
    assert backoff_delay(0, 0.2, 10.0, rand=lambda: 1.0) == pytest.approx(0.2)
    assert backoff_delay(3, 0.2, 10.0, rand=lambda: 1.0) == pytest.approx(1.6)
    assert backoff_delay(50, 0.2, 10.0, rand=lambda: 1.0) == pytest.approx(10.0)
    assert backoff_delay(50, 0.2, 10.0, rand=lambda: 0.0) == pytest.approx(0.2)
    assert all(0.2 <= backoff_delay(5, 0.2, 10.0) <= 6.4 for _ in range(100))


def test_a_backoff_range_never_ends_below_its_start_and_doubles_within_it():
    # Given a range whose high end is below its low one, Then the high end is the low one
    assert Backoff(0.5, 0.1) == Backoff(0.5, 0.5)
    # And a delay doubles up to the high end, never below the low one
    delays = Backoff(0.2, 1.0)
    assert [delays.doubled(d) for d in (0.0, 0.2, 0.4, 0.8)] == pytest.approx([0.2, 0.4, 0.8, 1.0])
    # And the jittered delay of an attempt stays within the range
    assert all(0.2 <= delays.jittered(attempt) <= 1.0 for attempt in range(10))


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ws://h/", "ws://h/?token=T&device=d_tab"),
        ("wss://x.example/prod?v=1", "wss://x.example/prod?v=1&token=T&device=d_tab"),
    ],
)
def test_build_url_appends_the_device_after_the_token(url, expected):
    # Given a device id for a token that names none (Cognito), When the URL is built
    # Then `device` follows the token as one more query parameter
    assert build_url(url, "T", "d_tab") == expected
