"""mediaDownload through the media CDN: a CloudFront signed URL (canned policy, 15 minutes) when the
stack has the CDN, the presigned S3 GET otherwise; the signing key is read once, by the function
granted it (the local stack's IAM emulation included). Over in-process moto (DynamoDB, S3, Secrets
Manager), through the real media handler."""

from __future__ import annotations

import base64
import datetime
import json
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from pydantic import ValidationError

from chat_backend import wiring
from chat_backend.config import Settings
from chat_backend.dal import aws
from local_stack.faults import running_as
from local_stack.iam import AccessGuard
from tests.unit import test_media
from tests.unit.conftest import clear_caches
from tests.unit.lambda_events import REGION
from tests.unit.test_media import download, send, uploaded

call = test_media.call  # the media / send handlers, answering frames

DOMAIN = "d111111abcdef8.cloudfront.net"
KEY_PAIR_ID = "K2JCJMDEHXQW5F"
SECRET_ENV = wiring.secret("media_cdn_key").env_var


@dataclass(frozen=True)
class Cdn:
    secret_arn: str
    public_key: rsa.RSAPublicKey


@cache
def _private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def cdn(aws_env: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cdn]:
    """The media function's environment as the CDK stack sets it with the media CDN: its domain,
    the key pair's id, and the secret holding the private key (PEM), stored in Secrets Manager."""
    pem = _private_key().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    secrets = boto3.client("secretsmanager", region_name=REGION)
    arn = secrets.create_secret(Name="chat-test/media-cdn-key", SecretString=pem.decode())["ARN"]
    monkeypatch.setenv(wiring.MEDIA_CDN_DOMAIN_ENV, DOMAIN)
    monkeypatch.setenv(wiring.MEDIA_CDN_KEY_PAIR_ID_ENV, KEY_PAIR_ID)
    monkeypatch.setenv(SECRET_ENV, arn)
    clear_caches()
    yield Cdn(secret_arn=arn, public_key=_private_key().public_key())
    clear_caches()


def attached(aws_env: Any, call: Callable[..., dict[str, Any]], chat_id: str) -> str:
    """Media alice uploaded and sent in `chat_id`; its id."""
    media_id = uploaded(aws_env, call, "u_alice", chat_id)
    assert call("u_alice", send(chat_id, [media_id], client_msg_id=f"cm-{media_id}"))["type"] == "ACK"
    return media_id


def verify_canned_policy(url: str, public_key: rsa.RSAPublicKey) -> tuple[str, int, str]:
    """CloudFront's check of a canned-policy signed URL: (the resource, its expiry, the key pair id).
    Raises InvalidSignature when the signature is not the key's over exactly that policy."""
    resource, _, query_string = url.partition("?")
    query = dict(urllib.parse.parse_qsl(query_string, strict_parsing=True))
    assert set(query) == {"Expires", "Signature", "Key-Pair-Id"}
    expires = int(query["Expires"])
    policy = json.dumps(
        {"Statement": [{"Resource": resource, "Condition": {"DateLessThan": {"AWS:EpochTime": expires}}}]},
        separators=(",", ":"),
    )
    signature = base64.b64decode(query["Signature"].translate(str.maketrans("-_~", "+=/")))
    public_key.verify(signature, policy.encode(), padding.PKCS1v15(), hashes.SHA1())
    return resource, expires, query["Key-Pair-Id"]


def test_a_member_gets_a_cloudfront_url_signed_for_that_object_for_15_minutes(
    aws_env: Any, cdn: Cdn, make_chat: Callable[..., str], call: Callable[..., dict[str, Any]]
) -> None:
    # Given the media CDN configured, and media alice sent in her chat with bob
    chat_id = make_chat("u_alice", "u_bob")
    media_id = attached(aws_env, call, chat_id)
    # When bob asks for it
    before = int(time.time())
    answer = call("u_bob", download(chat_id, media_id))
    # Then the URL is the CDN's, for exactly that object, signed with the key pair for 15 minutes
    assert (answer["type"], answer["requestId"], answer["mediaId"]) == ("MEDIA_URL", "r-down", media_id)
    resource, expires, key_pair_id = verify_canned_policy(answer["url"], cdn.public_key)
    assert resource == f"https://{DOMAIN}/{chat_id}/{media_id}"
    assert key_pair_id == KEY_PAIR_ID
    assert before + 900 <= expires <= int(time.time()) + 900
    # And expiresAt tells the client the same expiry
    stated = datetime.datetime.fromisoformat(answer["expiresAt"].replace("Z", "+00:00")).timestamp()
    assert abs(stated - expires) <= 1
    # And nothing of S3 is in it (the bucket is reached through CloudFront only)
    assert "X-Amz-Signature" not in answer["url"] and "amazonaws.com" not in answer["url"]


def test_the_signature_covers_the_object_and_the_expiry(
    aws_env: Any, cdn: Cdn, make_chat: Callable[..., str], call: Callable[..., dict[str, Any]]
) -> None:
    # Given a signed URL bob got for one media
    chat_id = make_chat("u_alice", "u_bob")
    media_id = attached(aws_env, call, chat_id)
    url = call("u_bob", download(chat_id, media_id))["url"]
    # When its object or its expiry is changed
    # Then the signature no longer verifies (CloudFront answers 403)
    expires = urllib.parse.parse_qs(urllib.parse.urlparse(url).query)["Expires"][0]
    for forged in (
        url.replace(media_id, "md_other"),
        url.replace(f"Expires={expires}", "Expires=4102444800"),
    ):
        with pytest.raises(InvalidSignature):
            verify_canned_policy(forged, cdn.public_key)


def test_the_signing_key_is_read_once_per_process(
    aws_env: Any, cdn: Cdn, make_chat: Callable[..., str], call: Callable[..., dict[str, Any]]
) -> None:
    # Given the media CDN, and a count of the function's Secrets Manager reads
    reads: list[str] = []
    aws.client("secretsmanager").meta.events.register(
        "before-parameter-build.secrets-manager.GetSecretValue",
        lambda params, **_: reads.append(params["SecretId"]),
    )
    chat_id = make_chat("u_alice", "u_bob")
    media_ids = [attached(aws_env, call, chat_id) for _ in range(2)]
    # When members download three times
    for user, media_id in (("u_bob", media_ids[0]), ("u_alice", media_ids[1]), ("u_bob", media_ids[1])):
        assert call(user, download(chat_id, media_id))["type"] == "MEDIA_URL"
    # Then the key was read once, from the configured secret
    assert reads == [cdn.secret_arn]


def test_without_the_cdn_the_answer_is_the_presigned_s3_get(
    aws_env: Any, make_chat: Callable[..., str], call: Callable[..., dict[str, Any]]
) -> None:
    # Given no media CDN (the local stack, or a stack deployed without the key)
    chat_id = make_chat("u_alice", "u_bob")
    media_id = attached(aws_env, call, chat_id)
    # When bob asks for the media
    url = call("u_bob", download(chat_id, media_id))["url"]
    # Then it is a SigV4 presigned GET of the bucket's object, for 15 minutes, as an attachment
    parsed = urllib.parse.urlparse(url)
    query = urllib.parse.parse_qs(parsed.query)
    assert parsed.path.endswith(f"/{chat_id}/{media_id}") and DOMAIN not in url
    assert query["X-Amz-Expires"] == ["900"] and "X-Amz-Signature" in query
    assert query["response-content-disposition"] == ["attachment"]
    assert "Key-Pair-Id" not in query


@pytest.mark.parametrize(
    "missing", [wiring.MEDIA_CDN_DOMAIN_ENV, wiring.MEDIA_CDN_KEY_PAIR_ID_ENV, SECRET_ENV]
)
def test_half_a_cdn_configuration_is_refused_not_served_from_s3(
    monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    # Given the CDN's settings with one of them missing
    given = {
        wiring.MEDIA_CDN_DOMAIN_ENV: DOMAIN,
        wiring.MEDIA_CDN_KEY_PAIR_ID_ENV: KEY_PAIR_ID,
        SECRET_ENV: "arn:aws:secretsmanager:us-east-1:123456789012:secret:chat/media-cdn-key-AbCdEf",
    }
    for name, value in given.items():
        if name != missing:
            monkeypatch.setenv(name, value)
    # When the settings are read / Then they are refused, naming what is missing
    with pytest.raises(ValidationError, match=missing):
        Settings()
    # And all of them make the CDN, none of them no CDN
    monkeypatch.setenv(missing, given[missing])
    assert Settings().media_cdn is not None
    for name in given:
        monkeypatch.delenv(name)
    assert Settings().media_cdn is None


def test_a_secret_given_by_name_rather_than_complete_arn_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the key secret named without its ARN (the function could not be granted it exactly)
    monkeypatch.setenv(wiring.MEDIA_CDN_DOMAIN_ENV, DOMAIN)
    monkeypatch.setenv(wiring.MEDIA_CDN_KEY_PAIR_ID_ENV, KEY_PAIR_ID)
    monkeypatch.setenv(SECRET_ENV, "chat/media-cdn-key")
    # When the settings are read / Then they are refused
    with pytest.raises(ValidationError, match="complete secret ARN"):
        Settings()


def test_only_the_function_granted_the_signing_key_may_read_it_locally(aws_env: Any, cdn: Cdn) -> None:
    # Given the local stack's IAM emulation, and the key secret
    session = boto3.session.Session(region_name=REGION)
    AccessGuard().install(session.events)
    secrets = session.client("secretsmanager")
    # When the media function reads it, Then that is allowed
    with running_as("media"):
        assert secrets.get_secret_value(SecretId=cdn.secret_arn)["SecretString"].startswith("-----BEGIN")
    # When the send function reads it, Then AccessDeniedException, as AWS refuses it
    with running_as("send"):
        with pytest.raises(ClientError) as denied:
            secrets.get_secret_value(SecretId=cdn.secret_arn)
        assert denied.value.response["Error"]["Code"] == "AccessDeniedException"
        assert "secretsmanager:GetSecretValue" in str(denied.value)
