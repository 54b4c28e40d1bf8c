"""S3 buckets, one per `wiring.BUCKETS` entry: private, encrypted, TLS only, versioned, with the
wiring's lifecycle rules and server access logs in one log bucket."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_s3 as s3
from constructs import Construct

from chat_backend import wiring
from chat_stack.nag import acknowledge

ACCESS_LOG_RETENTION = Duration.days(365)
S3_LOGS_BY_BUCKET_POLICY = "@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy"  # CDK feature flag


class Buckets(Construct):
    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        # S3 log delivery is granted by bucket policy, not the legacy LogDeliveryWrite ACL (which needs
        # ACLs enabled); set here, not in cdk.json, so `python app.py` and the tests build the same.
        self.node.set_context(S3_LOGS_BY_BUCKET_POLICY, True)
        self.access_logs = s3.Bucket(
            self,
            "AccessLogs",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.S3_MANAGED,  # the only encryption S3 log delivery supports
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[s3.LifecycleRule(id="expire-logs", expiration=ACCESS_LOG_RETENTION)],
            removal_policy=RemovalPolicy.RETAIN,
        )
        acknowledge(
            self.access_logs,
            "AwsSolutions-S1",
            "This is the server access log bucket: logging its own accesses into itself would loop.",
        )
        self.by_name: dict[str, s3.Bucket] = {spec.name: self._bucket(spec) for spec in wiring.BUCKETS}

    def _bucket(self, spec: wiring.Bucket) -> s3.Bucket:
        return s3.Bucket(
            self,
            spec.name,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            versioned=True,  # an overwrite or delete can be undone until the noncurrent version expires
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix=f"{spec.name}/",
            lifecycle_rules=[_lifecycle_rule(spec), *_pending_rules(spec)],
            removal_policy=RemovalPolicy.RETAIN,  # user media
        )


def _lifecycle_rule(spec: wiring.Bucket) -> s3.LifecycleRule:
    tiering = spec.intelligent_tiering_after_days
    noncurrent = spec.expire_noncurrent_after_days
    transitions = [
        s3.Transition(storage_class=storage_class, transition_after=Duration.days(days))
        for storage_class, days in (
            (s3.StorageClass.INTELLIGENT_TIERING, tiering),
            (s3.StorageClass.GLACIER_INSTANT_RETRIEVAL, spec.glacier_ir_after_days),
        )
        if days is not None
    ]
    return s3.LifecycleRule(
        id="lifecycle",
        abort_incomplete_multipart_upload_after=Duration.days(spec.abort_incomplete_upload_days),
        transitions=transitions or None,
        noncurrent_version_expiration=Duration.days(noncurrent) if noncurrent is not None else None,
    )


def _pending_rules(spec: wiring.Bucket) -> list[s3.LifecycleRule]:
    """Uploads never attached to a message (still tagged `state=pending`) expire."""
    if spec.expire_pending_after_days is None:
        return []
    return [
        s3.LifecycleRule(
            id="expire-unattached",
            tag_filters={"state": "pending"},
            expiration=Duration.days(spec.expire_pending_after_days),
        )
    ]
