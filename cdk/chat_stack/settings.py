"""Every deploy-time parameter of the app, read from CDK context in this one place.

-c stage=<name>              stage name, the stack is `chat-<name>` (default "dev")
-c alarmEmail=<address>      alarms notify an SNS topic with this email subscription (default: none)
-c userPoolId=<id>           use an existing Cognito user pool instead of creating one ...
-c userPoolClientId=<id>     ... and its app client (both or neither)
-c mediaCdnPublicKey=<pem>   media downloads through CloudFront signed URLs: the key pair's public
                             half (an RSA 2048 PEM, or the path of a file holding one) ...
-c mediaCdnKeySecretArn=<arn> ... and the Secrets Manager secret holding its private half (both or
                             neither; without them downloads are presigned S3 GETs, and synth warns)
-c pushApnsArn=<arn>         SNS platform applications for mobile push to offline devices: APNs,
-c pushApnsSandboxArn=<arn>  the APNs sandbox (development builds) and FCM; any of them, or none
-c pushFcmArn=<arn>          (then registerPush is BAD_REQUEST and synth warns)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from constructs import Node
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from chat_backend import wiring

DEFAULT_STAGE = "dev"
REPO_ROOT = Path(__file__).resolve().parents[2]


# Mobile push: the context key of each platform's SNS platform application.
PUSH_CONTEXT = {"apns": "pushApnsArn", "apns_sandbox": "pushApnsSandboxArn", "fcm": "pushFcmArn"}
PLATFORM_APPLICATION_ARN = re.compile(
    r"arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:app/(APNS|APNS_SANDBOX|GCM)/[\w.-]+"
)


@dataclass(frozen=True)
class DeploySettings:
    stage: str = DEFAULT_STAGE
    alarm_email: str | None = None
    existing_user_pool: ExistingUserPool | None = None
    media_cdn: MediaCdnKey | None = None
    push_platforms: dict[str, str] = field(default_factory=dict)  # platform -> SNS application ARN

    @classmethod
    def from_context(cls, node: Node) -> DeploySettings:
        def text(key: str) -> str | None:
            value = node.try_get_context(key)
            return (str(value).strip() or None) if value is not None else None

        pool_id, client_id = text("userPoolId"), text("userPoolClientId")
        if (pool_id is None) != (client_id is None):
            raise ValueError("context: give both userPoolId and userPoolClientId, or neither")
        public_key, secret_arn = text("mediaCdnPublicKey"), text("mediaCdnKeySecretArn")
        if (public_key is None) != (secret_arn is None):
            raise ValueError("context: give both mediaCdnPublicKey and mediaCdnKeySecretArn, or neither")
        key = MediaCdnKey.read(public_key, secret_arn) if public_key and secret_arn else None
        push_platforms = {p: arn for p, key in PUSH_CONTEXT.items() if (arn := text(key)) is not None}
        for platform, arn in push_platforms.items():
            if not PLATFORM_APPLICATION_ARN.fullmatch(arn):
                raise ValueError(
                    f"context: {PUSH_CONTEXT[platform]} is not an SNS platform application ARN: {arn}"
                )
        return cls(
            push_platforms=push_platforms,
            stage=text("stage") or DEFAULT_STAGE,
            alarm_email=text("alarmEmail"),
            existing_user_pool=ExistingUserPool(pool_id, client_id) if pool_id and client_id else None,
            media_cdn=key,
        )


@dataclass(frozen=True)
class MediaCdnKey:
    """The key pair media download URLs are signed with: CloudFront trusts the public half, the
    media function signs with the private half, which only Secrets Manager holds."""

    public_key_pem: str
    secret_arn: str

    @classmethod
    def read(cls, public_key: str, secret_arn: str) -> MediaCdnKey:
        """The key pair as given in context: the public half as a PEM, or the path of a file holding
        one (relative to the repository root), an RSA 2048 public key (the only kind CloudFront signed
        URLs take); the private half's secret, by its complete ARN."""
        if not re.fullmatch(wiring.SECRET_ARN_PATTERN, secret_arn):
            raise ValueError(f"context: mediaCdnKeySecretArn is not a complete secret ARN: {secret_arn}")
        pem = public_key if public_key.startswith("-----BEGIN") else (REPO_ROOT / public_key).read_text()
        key = serialization.load_pem_public_key(pem.encode())
        if not isinstance(key, rsa.RSAPublicKey) or key.key_size != 2048:
            raise ValueError("context: mediaCdnPublicKey must be an RSA 2048 public key (PEM)")
        return cls(pem.strip() + "\n", secret_arn)


@dataclass(frozen=True)
class ExistingUserPool:
    user_pool_id: str
    client_id: str
