"""The service container: repositories and clients built once per process from the settings.

Handlers call `services()` at invocation time (not at import), so the local stack can set the
environment before the first call and Lambda reuses everything across warm invocations.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cache, cached_property
from typing import TypeVar

from chat_backend import wiring
from chat_backend.config import MissingResource, Resources, Settings, resources, settings
from chat_backend.dal.chat_listing import ChatListing
from chat_backend.dal.chat_store import ChatStore
from chat_backend.dal.connection_poster import ConnectionPoster
from chat_backend.dal.connections import ConnectionRegistry
from chat_backend.dal.consent_store import ConsentStore
from chat_backend.dal.delivery_queue import ArchiveQueue, DeliveryQueue, FifoQueue, NotifyQueue
from chat_backend.dal.inbox_store import InboxStore
from chat_backend.dal.key_store import KeyStore
from chat_backend.dal.limit_store import LimitStore
from chat_backend.dal.media_bucket import MediaBucket
from chat_backend.dal.media_cdn import MediaCdn
from chat_backend.dal.message_archive import MessageArchive
from chat_backend.dal.message_store import MessageStore
from chat_backend.dal.presence_store import PresenceStore, SettleQueue
from chat_backend.dal.push_registry import PushRegistry
from chat_backend.dal.push_sender import PushSender
from chat_backend.dal.receipt_store import ReceiptStore
from chat_backend.dal.send_store import SendStore
from chat_backend.dal.sequencer import Sequencer
from chat_backend.logic.audience import MemberListCache, MembershipCache
from chat_backend.logic.auth import TokenVerifier
from chat_backend.logic.media import DownloadLinks
from chat_backend.logic.push import Pusher, RetryPolicy
from chat_backend.logic.rate_limits import RateLimiter, RouteGuard
from chat_backend.logic.send import Ledger, SendPolicy

T = TypeVar("T")


def _from_config(build: Callable[[Resources, Settings], T]) -> cached_property[T]:
    """A service built once, from the function's resources and settings alone."""
    return cached_property(lambda services: build(services.resources, services.settings))


@dataclass
class Services:
    resources: Resources
    settings: Settings

    # --- repositories and clients: one table, queue, bucket or API each ---------------------------

    store = _from_config(lambda r, s: ChatStore(r["chats"], r["messages"], receipts_table=r["receipts"]))
    messages = _from_config(lambda r, s: MessageStore(r["messages"], r["chats"]))
    archive = _from_config(lambda r, s: MessageArchive(r["archive"], r["chats"], r["messages"]))
    receipts = _from_config(lambda r, s: ReceiptStore(r["receipts"], r["chats"], r["messages"]))
    registry = _from_config(lambda r, s: ConnectionRegistry(r["connections"]))
    presence = _from_config(lambda r, s: PresenceStore(r["presence"]))
    keys = _from_config(lambda r, s: KeyStore(r["keys"]))
    inbox = _from_config(lambda r, s: InboxStore(r["inbox"]))
    consent = _from_config(lambda r, s: ConsentStore(r["consent"]))
    push_registry = _from_config(lambda r, s: PushRegistry(r["push"]))
    media = _from_config(lambda r, s: MediaBucket(r["media"]))

    queue = _from_config(lambda r, s: DeliveryQueue(r["delivery"]))
    notify_queue = _from_config(lambda r, s: NotifyQueue(r["notify"]))
    archive_queue = _from_config(lambda r, s: ArchiveQueue(r["archive_jobs"]))
    settle_queue = _from_config(lambda r, s: SettleQueue(r["presence_settle"]))
    summaries_queue = _from_config(lambda r, s: FifoQueue(r["summaries"]))
    member_jobs = _from_config(lambda r, s: FifoQueue(r["member_jobs"]))

    poster = _from_config(lambda r, s: ConnectionPoster(callback_url(s)))
    push_sender = _from_config(lambda r, s: PushSender(s.push_platforms))

    # --- what the use cases are handed -----------------------------------------------------------

    send_policy = _from_config(
        lambda r, s: SendPolicy(
            dedup_ttl_s=s.dedup_ttl_s,
            lease_s=s.send_lease_s,
            hole_grace_s=s.hole_grace_s,
            direct_push_max_members=s.direct_push_max_members,
        )
    )
    verifier = _from_config(
        lambda r, s: TokenVerifier(
            secret=s.jwt_secret, jwks_url=s.jwks_url, issuer=s.jwt_issuer, audience=s.jwt_audience
        )
    )

    @cached_property
    def member_lists(self) -> MemberListCache:
        return MemberListCache()

    @cached_property
    def ledger(self) -> Ledger:
        chats_table = self.resources["chats"]
        return Ledger(
            chats=self.store,
            sends=SendStore(chats_table),
            sequencer=Sequencer(chats_table),
            messages=self.messages,
            member_lists=self.member_lists,
            memberships=MembershipCache(),
            media=self.media,
            archive=self.archive,
        )

    @cached_property
    def listing(self) -> ChatListing:
        return self.store.listing

    @cached_property
    def media_downloads(self) -> DownloadLinks:
        """CloudFront signed URLs where the stack has the media CDN, presigned S3 GETs otherwise."""
        cdn = self.settings.media_cdn
        if cdn is None:
            return self.media
        return MediaCdn(cdn.domain, cdn.key_pair_id, cdn.key_secret_arn)

    @cached_property
    def pusher(self) -> Pusher:
        s = self.settings
        return Pusher(
            poster=self.poster,
            registry=self.registry,
            queue=self.queue,
            pool=self.io_pool,
            retry=RetryPolicy(max_attempts=s.push_max_attempts, base_delay_s=s.push_retry_delay_s),
        )

    @cached_property
    def limiter(self) -> RateLimiter:
        return RateLimiter(LimitStore(self.resources["limits"]))

    @cached_property
    def guard(self) -> RouteGuard:
        return RouteGuard(self.limiter, wiring.RATE_LIMITS)

    @cached_property
    def io_pool(self) -> ThreadPoolExecutor:
        """Bounded concurrency for a function's independent AWS calls (pushes, member reads)."""
        return ThreadPoolExecutor(max_workers=self.settings.io_concurrency, thread_name_prefix="io")


def callback_url(s: Settings) -> str:
    """The @connections endpoint, which a function posting to connections cannot do without."""
    if not s.callback_url:
        raise MissingResource(f"{wiring.CALLBACK_URL_ENV} not set")
    return s.callback_url


_running: ContextVar[str | None] = ContextVar("chat_function", default=None)


@contextmanager
def running(function: str) -> Iterator[None]:
    """Within it, `services()` are those of `function` (the wiring name of the function being
    invoked; handler_kit sets it around each invocation)."""
    token = _running.set(function)
    try:
        yield
    finally:
        _running.reset(token)


def services() -> Services:
    """The services of the function being invoked (built on its first invocation in this process,
    from its own resources), or, outside any invocation, those of every resource (tests, tools)."""
    return services_of(_running.get())


@cache
def services_of(function: str | None) -> Services:
    """The services of the wiring table's `function` (None: of every resource)."""
    return Services(resources(function), settings())


def forget() -> None:
    """Drop the configuration and services built so far: the next `services()` reads the
    environment again (tests change it between cases)."""
    settings.cache_clear()
    resources.cache_clear()
    services_of.cache_clear()
