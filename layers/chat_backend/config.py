"""Configuration, read once from the environment into a settings model.

Variable names come from the wiring table, so what the CDK stack and the local stack set is
exactly what is read here. Only handlers and the service container read settings; logic is
given plain values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from chat_backend import wiring


@dataclass(frozen=True)
class MediaCdn:
    """Downloads through CloudFront: the distribution's domain, the id CloudFront knows the signing
    key pair by, and the Secrets Manager secret holding its private key (PEM)."""

    domain: str
    key_pair_id: str
    key_secret_arn: str


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    chats_table: str = Field("chats", validation_alias=wiring.table("chats").env_var)
    messages_table: str = Field("messages", validation_alias=wiring.table("messages").env_var)
    connections_table: str = Field("connections", validation_alias=wiring.table("connections").env_var)
    receipts_table: str = Field("receipts", validation_alias=wiring.table("receipts").env_var)
    presence_table: str = Field("presence", validation_alias=wiring.table("presence").env_var)
    keys_table: str = Field("keys", validation_alias=wiring.table("keys").env_var)
    inbox_table: str = Field("inbox", validation_alias=wiring.table("inbox").env_var)
    consent_table: str = Field("consent", validation_alias=wiring.table("consent").env_var)
    limits_table: str = Field("limits", validation_alias=wiring.table("limits").env_var)
    media_bucket: str = Field("media", validation_alias=wiring.bucket("media").env_var)
    archive_bucket: str = Field("archive", validation_alias=wiring.bucket("archive").env_var)
    delivery_queue_url: str = Field("", validation_alias=wiring.queue("delivery").env_var)
    summaries_queue_url: str = Field("", validation_alias=wiring.queue("summaries").env_var)
    member_jobs_queue_url: str = Field("", validation_alias=wiring.queue("member_jobs").env_var)
    presence_settle_queue_url: str = Field("", validation_alias=wiring.queue("presence_settle").env_var)
    notify_queue_url: str = Field("", validation_alias=wiring.queue("notify").env_var)
    archive_jobs_queue_url: str = Field("", validation_alias=wiring.queue("archive_jobs").env_var)
    push_table: str = Field("push", validation_alias=wiring.table("push").env_var)
    # platform -> SNS platform application ARN; a platform not named cannot register for push.
    push_platforms: dict[str, str] = Field(default_factory=dict, validation_alias=wiring.PUSH_PLATFORMS_ENV)
    callback_url: str = Field("", validation_alias=wiring.CALLBACK_URL_ENV)
    # The media CDN (AWS only, all three or none): without it, downloads are presigned S3 GETs.
    media_cdn_domain: str | None = Field(None, validation_alias=wiring.MEDIA_CDN_DOMAIN_ENV)
    media_cdn_key_pair_id: str | None = Field(None, validation_alias=wiring.MEDIA_CDN_KEY_PAIR_ID_ENV)
    media_cdn_key_secret_arn: str | None = Field(
        None, validation_alias=wiring.secret("media_cdn_key").env_var
    )

    # Tokens: HS256 with a shared secret on the local stack; a JWKS URL (Cognito) on AWS.
    jwt_secret: str | None = Field(None, validation_alias=wiring.JWT_SECRET_ENV)
    jwks_url: str | None = Field(None, validation_alias=wiring.JWKS_URL_ENV)
    jwt_issuer: str | None = Field(None, validation_alias=wiring.JWT_ISSUER_ENV)
    jwt_audience: str | None = Field(None, validation_alias=wiring.JWT_AUDIENCE_ENV)

    # How long a device's connection record lives without a reconnect (API Gateway's 2 h maximum).
    connection_ttl_s: int = Field(2 * 3600, validation_alias="CHAT_CONNECTION_TTL_S")
    # How long a send idempotency record is kept: far beyond any client retry window.
    dedup_ttl_s: int = Field(7 * 24 * 3600, validation_alias="CHAT_DEDUP_TTL_S")
    # Concurrent AWS calls within one invocation (pushes to connections, member reads).
    io_concurrency: int = Field(32, ge=1, validation_alias="CHAT_IO_CONCURRENCY")
    # A reserved seq still empty this long after it was reserved is filled with a VOID (its writer
    # died or stalled), and a membership change in flight this long is abandoned.
    hole_grace_s: float = Field(5.0, gt=0, validation_alias="CHAT_HOLE_GRACE_S")
    # A send's claim on its clientMsgId: a duplicate may take it over after this long.
    send_lease_s: float = Field(5.0, gt=0, validation_alias="CHAT_SEND_LEASE_S")
    # Chats of at most this many members are pushed by the send function itself (one hop); larger
    # groups go through the stream's fan-out and the delivery queue.
    direct_push_max_members: int = Field(256, ge=0, validation_alias="CHAT_DIRECT_PUSH_MAX_MEMBERS")
    # Pushes per recipient before it is left to sync, and the wait before the first retry (doubling).
    push_max_attempts: int = Field(5, ge=1, validation_alias="CHAT_PUSH_MAX_ATTEMPTS")
    push_retry_delay_s: int = Field(1, ge=0, le=900, validation_alias="CHAT_PUSH_RETRY_DELAY_S")
    # Users per RECEIPTS page of the `receipts` query.
    receipts_page_size: int = Field(500, ge=1, le=1000, validation_alias="CHAT_RECEIPTS_PAGE_SIZE")
    # Messages older than this stay in the messages table; the archiver moves older ones to S3.
    hot_days: float = Field(30.0, gt=0, validation_alias="CHAT_HOT_DAYS")

    @model_validator(mode="after")
    def _media_cdn_whole_or_absent(self) -> Settings:
        """Half a CDN configuration is a broken deploy: refused, never served as S3 instead."""
        given = {
            wiring.MEDIA_CDN_DOMAIN_ENV: self.media_cdn_domain,
            wiring.MEDIA_CDN_KEY_PAIR_ID_ENV: self.media_cdn_key_pair_id,
            wiring.secret("media_cdn_key").env_var: self.media_cdn_key_secret_arn,
        }
        if any(given.values()) and not all(given.values()):
            missing = sorted(name for name, value in given.items() if not value)
            raise ValueError(f"media CDN half configured: {', '.join(missing)} missing")
        arn = self.media_cdn_key_secret_arn
        if arn and not re.fullmatch(wiring.SECRET_ARN_PATTERN, arn):
            raise ValueError(f"{wiring.secret('media_cdn_key').env_var} is not a complete secret ARN: {arn}")
        if self.media_cdn_domain and ("/" in self.media_cdn_domain or ":" in self.media_cdn_domain):
            raise ValueError(f"{wiring.MEDIA_CDN_DOMAIN_ENV} is a host name, not {self.media_cdn_domain}")
        return self

    @property
    def media_cdn(self) -> MediaCdn | None:
        """The CDN downloads go through, or None: presigned S3 GETs (the local stack)."""
        if not (self.media_cdn_domain and self.media_cdn_key_pair_id and self.media_cdn_key_secret_arn):
            return None
        return MediaCdn(self.media_cdn_domain, self.media_cdn_key_pair_id, self.media_cdn_key_secret_arn)


@cache
def settings() -> Settings:
    return Settings()
