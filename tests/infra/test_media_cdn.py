"""The media CDN: CloudFront in front of the private media bucket (Origin Access Control), signed
URLs only (a trusted key group holding the deployer's public key), HTTPS only, attachments, logged;
the media function reads the signing key it is granted. Without the key context the stack has no
CDN and downloads stay presigned S3 GETs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App
from aws_cdk.assertions import Template
from chat_stack import build
from chat_stack.settings import DeploySettings
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from chat_backend import wiring
from tests.infra.conftest import MEDIA_CDN, MEDIA_CDN_KEY_SECRET_ARN, MEDIA_CDN_PUBLIC_KEY, SKIP_BUNDLING
from tests.infra.helpers import as_list, function_props, logical_id, of_type, role_statements

DISTRIBUTION = "AWS::CloudFront::Distribution"
CDN_ENV = (
    wiring.MEDIA_CDN_DOMAIN_ENV,
    wiring.MEDIA_CDN_KEY_PAIR_ID_ENV,
    wiring.secret("media_cdn_key").env_var,
)
USES_KEY = [f for f in wiring.FUNCTIONS if "media_cdn_key" in f.uses]


@pytest.fixture(scope="module")
def without_cdn() -> dict[str, Any]:
    """The stack deployed without the media CDN's key context."""
    return Template.from_stack(build(App(context={**SKIP_BUNDLING, "stage": "nocdn"}))).to_json()


def distribution_config(resources: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    ((distribution_id, props),) = of_type(resources, DISTRIBUTION).items()
    return distribution_id, props["DistributionConfig"]


def media_bucket_statements(stack, resources: dict[str, Any]) -> list[dict[str, Any]]:
    bucket_id = logical_id(stack, stack.buckets.by_name["media"])
    return [
        statement
        for policy in of_type(resources, "AWS::S3::BucketPolicy").values()
        if policy["Bucket"] == {"Ref": bucket_id}
        for statement in policy["PolicyDocument"]["Statement"]
    ]


def test_the_distribution_reads_the_private_bucket_through_origin_access_control(stack, resources):
    # Given the stack with the media CDN / When synthesized
    _, config = distribution_config(resources)
    bucket_id = logical_id(stack, stack.buckets.by_name["media"])
    # Then its one origin is the media bucket, signed with an OAC (SigV4, always), no legacy OAI
    (origin,) = config["Origins"]
    assert origin["DomainName"] == {"Fn::GetAtt": [bucket_id, "RegionalDomainName"]}
    assert origin["S3OriginConfig"].get("OriginAccessIdentity", "") == ""
    (oac_id,) = of_type(resources, "AWS::CloudFront::OriginAccessControl")
    assert origin["OriginAccessControlId"] == {"Fn::GetAtt": [oac_id, "Id"]}
    oac = resources[oac_id]["Properties"]["OriginAccessControlConfig"]
    assert (oac["OriginAccessControlOriginType"], oac["SigningBehavior"], oac["SigningProtocol"]) == (
        "s3",
        "always",
        "sigv4",
    )
    assert not of_type(resources, "AWS::CloudFront::CloudFrontOriginAccessIdentity")


def test_the_bucket_stays_private_and_grants_reads_to_this_distribution_only(stack, resources):
    # Given the media bucket behind the CDN / When synthesized
    distribution_id, _ = distribution_config(resources)
    bucket = resources[logical_id(stack, stack.buckets.by_name["media"])]["Properties"]
    statements = media_bucket_statements(stack, resources)
    # Then public access stays blocked
    assert bucket["PublicAccessBlockConfiguration"] == dict.fromkeys(
        ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"), True
    )
    # And the policy's only Allow is s3:GetObject on its objects, to CloudFront, for this distribution
    (allow,) = [s for s in statements if s["Effect"] == "Allow"]
    assert allow["Principal"] == {"Service": "cloudfront.amazonaws.com"}
    assert as_list(allow["Action"]) == ["s3:GetObject"]
    source_arn = allow["Condition"]["StringEquals"]["AWS:SourceArn"]
    assert source_arn["Fn::Join"][1][-2:] == [":distribution/", {"Ref": distribution_id}]
    assert allow["Resource"]["Fn::Join"][1][-1] == "/*"


def test_viewers_use_https_and_signed_urls_of_the_deployers_key_only(stack, resources):
    # Given the stack given a public key as context / When synthesized
    _, config = distribution_config(resources)
    behavior = config["DefaultCacheBehavior"]
    # Then the one behavior is HTTPS only, GET / HEAD only, and no cache behavior relaxes it
    assert behavior["ViewerProtocolPolicy"] == "https-only"
    assert behavior["AllowedMethods"] == ["GET", "HEAD"]
    assert "CacheBehaviors" not in config
    # And it trusts one key group, holding exactly the given public key (the key pair id the
    # media function signs for)
    (group_id,) = of_type(resources, "AWS::CloudFront::KeyGroup")
    assert behavior["TrustedKeyGroups"] == [{"Ref": group_id}]
    (key_id, key) = next(iter(of_type(resources, "AWS::CloudFront::PublicKey").items()))
    assert resources[group_id]["Properties"]["KeyGroupConfig"]["Items"] == [{"Ref": key_id}]
    assert key["PublicKeyConfig"]["EncodedKey"].strip() == MEDIA_CDN_PUBLIC_KEY.strip()
    assert "TrustedSigners" not in behavior  # no legacy root-account key pairs


def test_answers_are_attachments_cached_at_the_edge_and_logged(stack, resources):
    # Given the distribution / When synthesized
    _, config = distribution_config(resources)
    behavior = config["DefaultCacheBehavior"]
    # Then a response headers policy serves every object as an opaque attachment, as the
    # presigned S3 GET does (and never sniffed)
    policy_id = behavior["ResponseHeadersPolicyId"]["Ref"]
    policy = resources[policy_id]["Properties"]["ResponseHeadersPolicyConfig"]
    headers = {h["Header"]: (h["Value"], h["Override"]) for h in policy["CustomHeadersConfig"]["Items"]}
    assert headers == {
        "Content-Type": ("application/octet-stream", True),
        "Content-Disposition": ("attachment", True),
    }
    assert policy["SecurityHeadersConfig"]["ContentTypeOptions"] == {"Override": True}
    # And objects are cached (the managed CachingOptimized policy: immutable, content-addressed keys)
    assert behavior["CachePolicyId"] == "658327ea-f89d-4fab-a63d-7e88639e58f6"
    # And access is logged to a private log bucket, itself logged, and the price class is the cheapest
    log_bucket_id = config["Logging"]["Bucket"]["Fn::GetAtt"][0]
    log_bucket = resources[log_bucket_id]["Properties"]
    assert log_bucket["PublicAccessBlockConfiguration"]["BlockPublicPolicy"] is True
    assert log_bucket["LoggingConfiguration"]["DestinationBucketName"]
    assert config["PriceClass"] == "PriceClass_100"


def test_the_media_function_signs_for_this_cdn_with_the_key_it_may_read(stack, resources):
    # Given the functions that use the signing key (the wiring's `uses`) / When synthesized
    distribution_id, _ = distribution_config(resources)
    (key_id,) = of_type(resources, "AWS::CloudFront::PublicKey")
    assert [f.name for f in USES_KEY] == ["media"]
    for spec in wiring.FUNCTIONS:
        env = function_props(stack, resources, spec.name)["Environment"]["Variables"]
        statements = role_statements(stack, resources, spec.name)
        secret_reads = [
            s for s in statements if any(a.startswith("secretsmanager:") for a in as_list(s["Action"]))
        ]
        if spec in USES_KEY:
            # Then it is told the distribution's domain, the key pair id and the secret's ARN
            assert env[wiring.MEDIA_CDN_DOMAIN_ENV] == {"Fn::GetAtt": [distribution_id, "DomainName"]}
            assert env[wiring.MEDIA_CDN_KEY_PAIR_ID_ENV] == {"Ref": key_id}
            assert env[wiring.secret("media_cdn_key").env_var] == MEDIA_CDN_KEY_SECRET_ARN
            # And may read exactly that secret, nothing more
            assert [(as_list(s["Action"]), s["Resource"]) for s in secret_reads] == [
                (["secretsmanager:GetSecretValue"], MEDIA_CDN_KEY_SECRET_ARN)
            ]
        else:
            # And no other function knows of it or may read it
            assert not set(CDN_ENV) & set(env), spec.name
            assert secret_reads == [], spec.name


def test_outputs_say_where_downloads_point(stack, template):
    # Given the stack with the CDN / When synthesized / Then an output names the CDN's https URL
    distribution_id = next(iter(of_type(template.to_json()["Resources"], DISTRIBUTION)))
    value = template.to_json()["Outputs"]["MediaDownloads"]["Value"]
    assert value == {"Fn::Join": ["", ["https://", {"Fn::GetAtt": [distribution_id, "DomainName"]}]]}


def test_without_the_key_context_there_is_no_cdn_and_downloads_stay_presigned(without_cdn):
    # Given the stack synthesized without mediaCdnPublicKey / mediaCdnKeySecretArn (see `without_cdn`)
    resources = without_cdn["Resources"]
    # Then it has no distribution, key group or CDN log bucket
    assert not of_type(resources, DISTRIBUTION)
    assert not of_type(resources, "AWS::CloudFront::KeyGroup")
    assert len(of_type(resources, "AWS::S3::Bucket")) == len(wiring.BUCKETS) + 1
    # And no function is told of a CDN or may read a secret: the media function presigns S3 GETs
    for props in of_type(resources, "AWS::Lambda::Function").values():
        assert not set(CDN_ENV) & set(props["Environment"]["Variables"])
    for policy in of_type(resources, "AWS::IAM::Policy").values():
        actions = [a for s in policy["PolicyDocument"]["Statement"] for a in as_list(s["Action"])]
        assert not any(a.startswith("secretsmanager:") for a in actions)
    # And the output says so
    assert without_cdn["Outputs"]["MediaDownloads"]["Value"] == "presigned S3 GETs (no media CDN)"


def test_the_key_context_is_both_or_neither_an_rsa_2048_key_and_a_complete_secret_arn(tmp_path: Path):
    # Given the two context keys as a deployer gives them: the PEM itself, or a file holding it
    pem_file = tmp_path / "media-cdn-public.pem"
    pem_file.write_text(MEDIA_CDN_PUBLIC_KEY)
    # When the settings are read / Then either form gives the same key and the secret's ARN
    for public_key in (MEDIA_CDN_PUBLIC_KEY, str(pem_file)):
        key = DeploySettings.from_context(App(context={**MEDIA_CDN, "mediaCdnPublicKey": public_key}).node)
        assert key.media_cdn is not None
        assert key.media_cdn.public_key_pem.strip() == MEDIA_CDN_PUBLIC_KEY.strip()
        assert key.media_cdn.secret_arn == MEDIA_CDN_KEY_SECRET_ARN
    # And none gives no CDN
    assert DeploySettings.from_context(App().node).media_cdn is None
    # And half of it, a secret named without its ARN, or a key CloudFront cannot take is refused
    half = {"mediaCdnPublicKey": MEDIA_CDN_PUBLIC_KEY}
    by_name = {**MEDIA_CDN, "mediaCdnKeySecretArn": "chat/media-cdn-key"}
    small = (
        rsa.generate_private_key(public_exponent=65537, key_size=1024)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    for context, message in (
        (half, "mediaCdnKeySecretArn"),
        (by_name, "complete secret ARN"),
        ({**MEDIA_CDN, "mediaCdnPublicKey": small}, "RSA 2048"),
    ):
        with pytest.raises(ValueError, match=message):
            DeploySettings.from_context(App(context=context).node)
