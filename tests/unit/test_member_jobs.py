"""Member jobs (logic/member_jobs.py): an add or a create too large for one invocation goes on as
jobs on the member-jobs queue, each chunk one announced membership change."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from chat_backend.logic import chats as chats_logic
from chat_backend.logic.member_jobs import run_member_job
from chat_backend.logic.members import add_members
from chat_backend.logic.send import Ledger
from chat_backend.models.client_frames import CreateChatFrame
from chat_backend.models.queue_payloads import MemberJob
from chat_backend.services import services
from tests.unit.helpers import GRACE_S, MakeChat, add_frame, caller, creating, member_ids, remove

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def time_for_one_chunk() -> float:
    """An invocation with no time left after its first chunk (which always runs)."""
    return 0.0


def added_announcements(aws_env: Any, chat_id: str) -> list[list[str]]:
    bodies = [
        json.loads(bytes(m["ciphertext"])) for m in aws_env.messages(chat_id) if m["sender"] == "system"
    ]
    return [b["members"] for b in bodies if b["event"] == "added"]


def queued_jobs(aws_env: Any) -> list[MemberJob]:
    return [MemberJob.model_validate_json(m["Body"]) for m in aws_env.receive_all("member_jobs")]


def run_queued(jobs: list[MemberJob], handler: Handler, lambda_context: Any) -> None:
    """The member-jobs function, one record per invocation as its trigger delivers them."""
    for job in jobs:
        record = {
            "messageId": "m1",
            "body": job.model_dump_json(),
            "attributes": {},
            "eventSource": "aws:sqs",
        }
        assert handler({"Records": [record]}, lambda_context) == {"batchItemFailures": []}


def test_an_add_that_runs_out_of_time_answers_what_is_pending_and_a_job_adds_the_rest(
    aws_env: Any,
    ledger: Ledger,
    make_chat: MakeChat,
    handler_of: Callable[[str], Handler],
    lambda_context: Any,
) -> None:
    # Given alice's group of 3, and an invocation with time for one chunk only
    chat_id = make_chat("u_alice", "u_bob", "u_carol")
    newcomers = [f"u_new{i:03d}" for i in range(250)]
    # When alice adds 250 users
    s = services()
    answer = add_members(
        ledger,
        s.consent,
        s.io_pool,
        caller("u_alice"),
        add_frame(chat_id, newcomers),
        GRACE_S,
        s.member_jobs,
        time_for_one_chunk,
    )
    # Then the answer counts the first chunk's 95 in and 155 pending
    assert (answer.member_count, answer.pending_members) == (98, 155)
    assert '"pendingMembers":155' in answer.to_json()
    assert added_announcements(aws_env, chat_id) == [newcomers[:95]]
    # And one job holds the other 155
    [job] = queued_jobs(aws_env)
    assert (job.chat_id, job.by, job.users) == (chat_id, "u_alice", newcomers[95:])
    # When the member-jobs function runs it
    run_queued([job], handler_of("member_jobs"), lambda_context)
    # Then all 253 are members, each chunk announced naming exactly who got in, nothing queued
    assert member_ids(ledger.chats, chat_id) == {"u_alice", "u_bob", "u_carol", *newcomers}
    assert added_announcements(aws_env, chat_id) == [newcomers[:95], newcomers[95:190], newcomers[190:]]
    assert queued_jobs(aws_env) == []


def test_a_job_out_of_time_queues_its_rest_once_and_a_redelivered_job_adds_nobody_twice(
    aws_env: Any, ledger: Ledger, make_chat: MakeChat
) -> None:
    # Given a job adding 200 users to alice's group
    chat_id = make_chat("u_alice", "u_bob")
    users = [f"u_job{i:03d}" for i in range(200)]
    job = MemberJob(chat_id=chat_id, by="u_alice", users=users)
    s = services()
    # When it runs with time for one chunk, and SQS then hands it over again (its invocation died
    # after queueing the rest) and it runs again as short
    for _ in range(2):
        left = run_member_job(ledger, s.consent, s.io_pool, s.member_jobs, job, GRACE_S, time_for_one_chunk)
        assert left == 105
    # Then the first 95 were added and announced once, and the rest is queued once
    assert added_announcements(aws_env, chat_id) == [users[:95]]
    [rest] = queued_jobs(aws_env)
    assert rest.users == users[95:]


def test_a_job_whose_requester_may_no_longer_add_ends_adding_nobody(
    aws_env: Any, ledger: Ledger, make_chat: MakeChat
) -> None:
    # Given a queued add by alice, who has since left the group
    chat_id = make_chat("u_alice", "u_bob")
    remove(ledger, caller("u_alice"), chat_id, ["u_alice"])
    job = MemberJob(chat_id=chat_id, by="u_alice", users=["u_x", "u_y"])
    s = services()
    # When the job runs
    left = run_member_job(ledger, s.consent, s.io_pool, s.member_jobs, job, GRACE_S, lambda: 60.0)
    # Then nobody is added and nothing is queued again
    assert left == 0
    assert member_ids(ledger.chats, chat_id) == {"u_bob"}
    assert added_announcements(aws_env, chat_id) == [] and queued_jobs(aws_env) == []


def test_a_job_decides_consent_again_when_it_runs(
    aws_env: Any, ledger: Ledger, make_chat: MakeChat, route: Callable[..., dict[str, Any]]
) -> None:
    # Given a queued add of dave and erin, and erin has since said nobody may add her
    chat_id = make_chat("u_alice", "u_bob")
    route("consent", {"action": "setPrivacy", "requestId": "p", "groupAdd": "nobody"}, user_id="u_erin")
    job = MemberJob(chat_id=chat_id, by="u_alice", users=["u_dave", "u_erin"])
    s = services()
    # When the job runs
    run_member_job(ledger, s.consent, s.io_pool, s.member_jobs, job, GRACE_S, lambda: 60.0)
    # Then dave is in and erin is not
    assert member_ids(ledger.chats, chat_id) == {"u_alice", "u_bob", "u_dave"}


def test_a_create_out_of_time_makes_the_chat_with_those_written_and_a_job_adds_the_rest(
    aws_env: Any, ledger: Ledger, handler_of: Callable[[str], Handler], lambda_context: Any
) -> None:
    # Given an invocation whose time runs low after the first batch of 25 member items
    others = [f"u_m{i:03d}" for i in range(130)]
    frame = CreateChatFrame.model_validate(
        {"action": "createChat", "requestId": "c", "kind": "group", "members": others}
    )
    # When alice creates a group of 130 others
    s = services()
    answer = chats_logic.create_chat(
        s.store, s.consent, s.io_pool, caller("u_alice"), frame, s.member_jobs, time_for_one_chunk
    )
    # Then the chat holds her and the first 24, and says 106 are pending
    assert (answer.member_count, answer.pending_members) == (25, 106)
    assert member_ids(ledger.chats, answer.chat_id) == {"u_alice", *others[:24]}
    # When the job runs, Then the other 106 are added, announced by alice in chunks
    run_queued(queued_jobs(aws_env), handler_of("member_jobs"), lambda_context)
    assert member_ids(ledger.chats, answer.chat_id) == {"u_alice", *others}
    assert added_announcements(aws_env, answer.chat_id) == [others[24:119], others[119:]]
    # And a create with time enough answers no pendingMembers
    whole = creating(s.store, caller("u_alice"), frame)
    assert (whole.member_count, whole.pending_members) == (131, None)
    assert "pendingMembers" not in whole.to_json()
