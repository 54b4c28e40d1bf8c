"""Presence-settle queue -> OFFLINE for users whose last device left more than the grace ago and
did not come back. Each job is one user; FIFO groups are users, so one user's jobs run in order."""

import time

from aws_lambda_powertools.utilities.batch import SqsFifoPartialProcessor
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from chat_backend.dal.presence_store import settle_job_user
from chat_backend.handler_kit import record_handler
from chat_backend.logic.presence import settle
from chat_backend.observability import count
from chat_backend.services import services


def settle_record(record: SQSRecord) -> None:
    s = services()
    if settle(s.presence, s.pusher, s.settle_queue, settle_job_user(record.body), time.time()):
        count("PresenceOfflinePushes")


handler = record_handler("presence_settle", SqsFifoPartialProcessor(skip_group_on_error=True), settle_record)
