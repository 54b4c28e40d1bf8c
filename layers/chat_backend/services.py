"""The service container: repositories and clients built once per process from the settings.

Handlers call `services()` at invocation time (not at import), so the local stack can set the
environment before the first call and Lambda reuses everything across warm invocations.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache, cached_property
from typing import TypeVar

from chat_backend import wiring
from chat_backend.config import Settings, settings
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


def _from_settings(build: Callable[[Settings], T]) -> cached_property[T]:
    """A service built once, from the settings alone."""
    return cached_property(lambda services: build(services.settings))


@dataclass
class Services:
    settings: Settings

    # --- repositories and clients: one table, queue, bucket or API each ---------------------------

    store = _from_settings(
        lambda s: ChatStore(s.chats_table, s.messages_table, receipts_table=s.receipts_table)
    )
    messages = _from_settings(lambda s: MessageStore(s.messages_table, s.chats_table))
    archive = _from_settings(lambda s: MessageArchive(s.archive_bucket, s.chats_table, s.messages_table))
    receipts = _from_settings(lambda s: ReceiptStore(s.receipts_table, s.chats_table, s.messages_table))
    registry = _from_settings(lambda s: ConnectionRegistry(s.connections_table))
    presence = _from_settings(lambda s: PresenceStore(s.presence_table))
    keys = _from_settings(lambda s: KeyStore(s.keys_table))
    inbox = _from_settings(lambda s: InboxStore(s.inbox_table))
    consent = _from_settings(lambda s: ConsentStore(s.consent_table))
    push_registry = _from_settings(lambda s: PushRegistry(s.push_table))
    media = _from_settings(lambda s: MediaBucket(s.media_bucket))

    queue = _from_settings(lambda s: DeliveryQueue(s.delivery_queue_url))
    notify_queue = _from_settings(lambda s: NotifyQueue(s.notify_queue_url))
    archive_queue = _from_settings(lambda s: ArchiveQueue(s.archive_jobs_queue_url))
    settle_queue = _from_settings(lambda s: SettleQueue(s.presence_settle_queue_url))
    summaries_queue = _from_settings(lambda s: FifoQueue(s.summaries_queue_url))
    member_jobs = _from_settings(lambda s: FifoQueue(s.member_jobs_queue_url))

    poster = _from_settings(lambda s: ConnectionPoster(s.callback_url))
    push_sender = _from_settings(lambda s: PushSender(s.push_platforms))

    # --- what the use cases are handed -----------------------------------------------------------

    send_policy = _from_settings(
        lambda s: SendPolicy(
            dedup_ttl_s=s.dedup_ttl_s,
            lease_s=s.send_lease_s,
            hole_grace_s=s.hole_grace_s,
            direct_push_max_members=s.direct_push_max_members,
        )
    )
    verifier = _from_settings(
        lambda s: TokenVerifier(
            secret=s.jwt_secret, jwks_url=s.jwks_url, issuer=s.jwt_issuer, audience=s.jwt_audience
        )
    )

    @cached_property
    def member_lists(self) -> MemberListCache:
        return MemberListCache()

    @cached_property
    def ledger(self) -> Ledger:
        chats_table = self.settings.chats_table
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
        return RateLimiter(LimitStore(self.settings.limits_table))

    @cached_property
    def guard(self) -> RouteGuard:
        return RouteGuard(self.limiter, wiring.RATE_LIMITS)

    @cached_property
    def io_pool(self) -> ThreadPoolExecutor:
        """Bounded concurrency for a function's independent AWS calls (pushes, member reads)."""
        return ThreadPoolExecutor(max_workers=self.settings.io_concurrency, thread_name_prefix="io")


@cache
def services() -> Services:
    return Services(settings())
