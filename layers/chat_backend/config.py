"""Configuration, read once from the environment: a function's resources and its settings.

`Resources`: the physical names (table names, queue URLs, bucket names) of exactly the resources
the function's wiring entry `uses`, each required: a missing one fails the function's first
invocation (its cold start), never a request later, and there is no default name to fall back to.
A resource the function does not use gets a name that says so, which any call refuses (AWS's IAM
policy and the local stack's alike): the local stack runs every function in one process with one
environment, and this keeps each function to its own grants there too.

`Settings`: the tunables, each with the default the deployment uses. Variable names come from the
wiring table, so what the CDK stack and the local stack set is exactly what is read here. Only
handlers and the service container read configuration; logic is given plain values.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from chat_backend import wiring


class MissingResource(RuntimeError):
    """A function's environment lacks the name of a resource its wiring entry uses: a broken
    deployment (or a local stack started without bootstrap)."""


@dataclass(frozen=True)
class Resources:
    """Logical name (the wiring table's) -> physical name or URL, for the resources one function
    uses. `function` None: every resource of the wiring (tests and tools outside any function)."""

    function: str | None
    names: Mapping[str, str]

    def __getitem__(self, logical: str) -> str:
        name = self.names.get(logical)
        if name is not None:
            return name
        # Not used by this function: a name no grant covers, so a call fails where it is made.
        return f"{logical}-not-granted-to-{self.function}"

    @classmethod
    def of(cls, function: str | None, environ: Mapping[str, str]) -> Resources:
        # Secrets are left out: a stack may deploy without one (Settings reads those it was given).
        resources = {r.name for r in (*wiring.TABLES, *wiring.QUEUES, *wiring.BUCKETS)}
        uses = resources if function is None else resources & set(wiring.function(function).uses)
        env_vars = {logical: wiring.resource_env_var(logical) for logical in sorted(uses)}
        names = {logical: environ[var] for logical, var in env_vars.items() if environ.get(var)}
        missing = [var for logical, var in env_vars.items() if logical not in names]
        if missing and function is not None:
            raise MissingResource(f"function {function}: {', '.join(sorted(missing))} not set")
        return cls(function, names)


@dataclass(frozen=True)
class MediaCdn:
    """Downloads through CloudFront: the distribution's domain, the id CloudFront knows the signing
    key pair by, and the Secrets Manager secret holding its private key (PEM)."""

    domain: str
    key_pair_id: str
    key_secret_arn: str


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

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


@cache
def resources(function: str | None) -> Resources:
    return Resources.of(function, os.environ)
