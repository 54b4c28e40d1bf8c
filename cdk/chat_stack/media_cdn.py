"""The media CDN: a CloudFront distribution in front of the media bucket, which stays private.

CloudFront reads the bucket through Origin Access Control (the bucket policy grants s3:GetObject to
this distribution only, by AWS:SourceArn), serves HTTPS only, and only signed URLs (a trusted key
group holding the deployer's public key); the media function signs them with the private key it
reads from Secrets Manager (granted through the wiring's `uses`, like every other resource).
Objects are immutable (a fresh mediaId per upload), so the edge caches them; every request is still
checked against its signature. Answers are attachments, as the presigned S3 GET makes them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_cloudfront_origins as origins
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from chat_backend import wiring
from chat_stack.nag import acknowledge
from chat_stack.settings import MediaCdnKey

KEY_SECRET = "media_cdn_key"  # the wiring's secret: the signing key's private half
LOG_RETENTION = Duration.days(365)
# North America and Europe: the cheapest class. Viewers elsewhere are still served, from the
# nearest of those edges; PRICE_CLASS_200 / _ALL buy nearer edges for them at a higher rate.
PRICE_CLASS = cloudfront.PriceClass.PRICE_CLASS_100
# What a presigned S3 GET answers (dal/media_bucket.py): a browser never renders a blob.
ATTACHMENT_HEADERS = {"Content-Type": "application/octet-stream", "Content-Disposition": "attachment"}


class MediaCdn(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        bucket: s3.IBucket,
        access_logs: s3.IBucket,
        key: MediaCdnKey,
    ) -> None:
        super().__init__(scope, construct_id)
        self.key_secret = secretsmanager.Secret.from_secret_complete_arn(self, "SigningKey", key.secret_arn)
        fingerprint = hashlib.sha256(key.public_key_pem.strip().encode()).hexdigest()[:12]
        self.public_key = cloudfront.PublicKey(
            self,
            "PublicKey",
            encoded_key=key.public_key_pem,
            # A new key is a new resource (CloudFormation replaces it): its name must differ.
            public_key_name=f"{Stack.of(self).stack_name}-media-{fingerprint}",
            comment="Verifies the media function's signed download URLs",
        )
        self.key_group = cloudfront.KeyGroup(
            self, "KeyGroup", items=[self.public_key], comment="Signers of media download URLs"
        )
        self.logs = s3.Bucket(
            self,
            "Logs",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.S3_MANAGED,  # SSE-KMS is not supported by CloudFront logging
            enforce_ssl=True,
            # CloudFront's standard logs are delivered through an ACL grant: ACLs must stay enabled.
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
            server_access_logs_bucket=access_logs,
            server_access_logs_prefix="media-cdn-logs/",
            lifecycle_rules=[s3.LifecycleRule(id="expire-logs", expiration=LOG_RETENTION)],
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.distribution = cloudfront.Distribution(
            self,
            "Distribution",
            comment="Media downloads (signed URLs only)",
            default_behavior=cloudfront.BehaviorOptions(
                origin=origins.S3BucketOrigin.with_origin_access_control(
                    bucket, origin_access_levels=[cloudfront.AccessLevel.READ]
                ),
                viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.HTTPS_ONLY,
                allowed_methods=cloudfront.AllowedMethods.ALLOW_GET_HEAD,
                cached_methods=cloudfront.CachedMethods.CACHE_GET_HEAD,
                # Query strings (the signature) are not part of the cache key: one cached copy per object.
                cache_policy=cloudfront.CachePolicy.CACHING_OPTIMIZED,
                response_headers_policy=self._attachment_headers(),
                trusted_key_groups=[self.key_group],
                compress=False,  # client-encrypted bytes do not compress
            ),
            price_class=PRICE_CLASS,
            http_version=cloudfront.HttpVersion.HTTP2_AND_3,
            enable_logging=True,
            log_bucket=self.logs,
            log_file_prefix="media/",
        )
        self._acknowledge()

    def _attachment_headers(self) -> cloudfront.ResponseHeadersPolicy:
        return cloudfront.ResponseHeadersPolicy(
            self,
            "Attachment",
            comment="Media as opaque attachments, as the presigned S3 GET serves them",
            custom_headers_behavior=cloudfront.ResponseCustomHeadersBehavior(
                custom_headers=[
                    cloudfront.ResponseCustomHeader(header=name, value=value, override=True)
                    for name, value in ATTACHMENT_HEADERS.items()
                ]
            ),
            security_headers_behavior=cloudfront.ResponseSecurityHeadersBehavior(
                content_type_options=cloudfront.ResponseHeadersContentTypeOptions(override=True),
                strict_transport_security=cloudfront.ResponseHeadersStrictTransportSecurity(
                    access_control_max_age=Duration.days(365), include_subdomains=True, override=True
                ),
            ),
        )

    def serve(self, functions: Mapping[str, lambda_.Function]) -> None:
        """Tell each function that uses the signing key where the CDN is and which key it signs for
        (its ARN and read grant come from the wiring's `uses`, in `Functions`)."""
        for spec in wiring.FUNCTIONS:
            if KEY_SECRET in spec.uses:
                fn = functions[spec.name]
                fn.add_environment(wiring.MEDIA_CDN_DOMAIN_ENV, self.distribution.distribution_domain_name)
                fn.add_environment(wiring.MEDIA_CDN_KEY_PAIR_ID_ENV, self.public_key.public_key_id)

    def _acknowledge(self) -> None:
        acknowledge(
            self.distribution,
            "AwsSolutions-CFR1",
            "Media is served to members wherever they are; every request needs a signed URL the "
            "backend issues to members only, so a geographic restriction would add nothing.",
        )
        acknowledge(
            self.distribution,
            "AwsSolutions-CFR2",
            "No WAF: only GETs of signed URLs are served (CloudFront refuses any other request at the "
            "edge, before the origin), and a CLOUDFRONT-scoped web ACL lives in us-east-1, outside this "
            "stack's region.",
        )
        acknowledge(
            self.distribution,
            "AwsSolutions-CFR4",
            "The distribution serves on its own *.cloudfront.net name, whose default certificate "
            "fixes the viewer TLS policy; a TLSv1.2_2021 minimum needs a custom domain and an ACM "
            "certificate in us-east-1, which this stack does not take. The bytes are encrypted and "
            "hash-checked by the clients, so the transport protects ciphertext only.",
        )
