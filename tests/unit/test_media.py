"""mediaUpload / mediaDownload and media attached by send, through the media and send handlers
over in-process moto (DynamoDB + S3)."""

from __future__ import annotations

import base64
import json
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import pytest

from chat_backend.models.common import MAX_MEDIA_BYTES
from chat_backend.services import services, services_of
from tests.unit.helpers import add, caller, remove

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


@pytest.fixture
def call(
    aws_env: Any,
    handler_of: Callable[[str], Handler],
    make_message_event: Callable[..., dict[str, Any]],
    lambda_context: Any,
) -> Callable[..., dict[str, Any]]:
    """Send a frame as `user` to the function serving its action; the answer frame."""

    def _call(user: str, body: dict[str, Any]) -> dict[str, Any]:
        function = "send" if body["action"] == "send" else "media"
        response = handler_of(function)(make_message_event(body, user_id=user), lambda_context)
        return json.loads(response["body"])

    return _call


def upload(chat_id: str, size: int = 1234, content_type: str = "image/jpeg") -> dict[str, Any]:
    return {
        "action": "mediaUpload",
        "requestId": "r-up",
        "chatId": chat_id,
        "contentType": content_type,
        "size": size,
    }


def download(chat_id: str, media_id: str) -> dict[str, Any]:
    return {"action": "mediaDownload", "requestId": "r-down", "chatId": chat_id, "mediaId": media_id}


def send(chat_id: str, media_ids: list[str], client_msg_id: str = "cm-1") -> dict[str, Any]:
    return {
        "action": "send",
        "clientMsgId": client_msg_id,
        "chatId": chat_id,
        "ciphertext": base64.b64encode(b"caption").decode(),
        "mediaIds": media_ids,
    }


def uploaded(aws_env: Any, call: Callable[..., dict[str, Any]], user: str, chat_id: str) -> str:
    """A media id announced by `user` and whose bytes are in the bucket; returns it."""
    media_id = call(user, upload(chat_id, size=5))["mediaId"]
    aws_env.s3.put_object(Bucket=aws_env.buckets["media"], Key=f"{chat_id}/{media_id}", Body=b"bytes")
    return str(media_id)


def media_items(aws_env: Any, chat_id: str | None = None) -> list[dict[str, Any]]:
    return [
        i
        for i in aws_env.scan("chats")
        if i["sk"].startswith("MEDIA#") and (chat_id is None or i["chatId"] == chat_id)
    ]


# --- upload --------------------------------------------------------------------------------------


def test_upload_answers_a_presigned_post_for_the_chat_key_and_records_the_media(
    aws_env: Any, make_chat: Callable[..., str], call: Callable[..., dict[str, Any]]
) -> None:
    # Given a chat of alice and bob
    chat_id = make_chat("u_alice", "u_bob")
    # When alice announces an upload of 1234 bytes of image/jpeg
    answer = call("u_alice", upload(chat_id))
    # Then she gets MEDIA_UPLOAD with a fresh md_ id, the bucket's URL and the policy fields
    assert answer["type"] == "MEDIA_UPLOAD" and answer["requestId"] == "r-up"
    media_id = answer["mediaId"]
    assert media_id.startswith("md_") and answer["expiresAt"].endswith("Z")
    assert aws_env.buckets["media"] in answer["url"]
    fields = answer["fields"]
    assert fields["key"] == f"{chat_id}/{media_id}"
    assert fields["Content-Type"] == "image/jpeg"
    assert fields["x-amz-algorithm"] == "AWS4-HMAC-SHA256"  # SigV4: SigV2 is refused by new buckets
    # And the signed policy holds the exact size, the content type, the key, and the pending tag
    # (what the bucket's lifecycle expires unless a message attaches it)
    policy = json.loads(base64.b64decode(fields["policy"]))
    conditions = policy["conditions"]
    assert ["content-length-range", 1234, 1234] in conditions
    assert {"Content-Type": "image/jpeg"} in conditions
    assert {"key": f"{chat_id}/{media_id}"} in conditions
    assert {"tagging": fields["tagging"]} in conditions and "<Value>pending</Value>" in fields["tagging"]
    # And the chat holds an unattached MEDIA# item for it, forgotten in 2 days unless attached
    [item] = media_items(aws_env, chat_id)
    assert item["sk"] == f"MEDIA#{media_id}"
    assert (item["uploader"], item["contentType"], int(item["size"])) == ("u_alice", "image/jpeg", 1234)
    assert item["attached"] is False and item["createdAt"]
    assert 0 < int(item["expiresAt"]) - time.time() <= 2 * 86_400


def test_uploads_past_the_daily_quota_are_rate_limited_until_it_refills(
    aws_env: Any, make_chat: Callable[..., str], call: Callable[..., dict[str, Any]]
) -> None:
    # Given alice's chat, and a quota of 2 GiB a day
    chat_id = make_chat("u_alice", "u_bob")
    services_of("media").limiter.clock = lambda: 1_800_000_000.0  # every upload at one instant
    # When she announces 20 uploads of 100 MiB, then one more
    answers = [call("u_alice", upload(chat_id, size=MAX_MEDIA_BYTES)) for _ in range(21)]
    # Then the first 20 (2,000 MiB) get their URLs and the 21st is RATE_LIMITED, with the wait
    # until the 52 MiB it lacks have refilled (about 37 minutes at 2 GiB a day), no item written
    assert [a["type"] for a in answers[:20]] == ["MEDIA_UPLOAD"] * 20
    assert answers[20]["code"] == "RATE_LIMITED"
    assert 36 * 60_000 < answers[20]["retryAfterMs"] < 38 * 60_000
    assert len(media_items(aws_env, chat_id)) == 20
    # And bob's own quota is untouched
    assert call("u_bob", upload(chat_id, size=MAX_MEDIA_BYTES))["type"] == "MEDIA_UPLOAD"


def test_a_send_naming_media_never_uploaded_is_not_found_and_stores_nothing(
    aws_env: Any, make_chat: Callable[..., str], call: Callable[..., dict[str, Any]]
) -> None:
    # Given alice announced an upload to her chat but never posted the bytes
    chat_id = make_chat("u_alice", "u_bob")
    media_id = call("u_alice", upload(chat_id, size=5))["mediaId"]
    # When she sends a message carrying it
    answer = call("u_alice", send(chat_id, [media_id]))
    # Then NOT_FOUND, and nothing is stored or attached
    assert (answer["type"], answer["code"]) == ("ERROR", "NOT_FOUND")
    assert aws_env.messages(chat_id) == []
    assert media_items(aws_env, chat_id)[0]["attached"] is False


def test_upload_by_a_non_member_is_forbidden_and_writes_nothing(
    aws_env: Any, make_chat: Callable[..., str], call: Callable[..., dict[str, Any]]
) -> None:
    chat_id = make_chat("u_alice", "u_bob")
    before = aws_env.scan("chats")
    answer = call("u_mallory", upload(chat_id))
    assert (answer["type"], answer["code"], answer["requestId"]) == ("ERROR", "FORBIDDEN", "r-up")
    assert aws_env.scan("chats") == before


@pytest.mark.parametrize(
    ("size", "content_type", "code"),
    [
        (MAX_MEDIA_BYTES + 1, "image/jpeg", "TOO_LARGE"),
        (0, "image/jpeg", "BAD_REQUEST"),
        (-5, "image/jpeg", "BAD_REQUEST"),
        ("12", "image/jpeg", "BAD_REQUEST"),
        (10, "jpeg", "BAD_REQUEST"),
        (10, "image/jpeg; charset=x", "BAD_REQUEST"),
        (10, "text/html\r\nX: y", "BAD_REQUEST"),
    ],
)
def test_upload_with_a_bad_size_or_content_type_is_refused_and_writes_nothing(
    aws_env: Any,
    make_chat: Callable[..., str],
    call: Callable[..., dict[str, Any]],
    size: Any,
    content_type: str,
    code: str,
) -> None:
    chat_id = make_chat("u_alice", "u_bob")
    before = aws_env.scan("chats")
    answer = call("u_alice", upload(chat_id, size=size, content_type=content_type))
    assert (answer["type"], answer["code"]) == ("ERROR", code)
    assert aws_env.scan("chats") == before


def test_upload_of_exactly_the_maximum_size_is_accepted(
    aws_env: Any, make_chat: Callable[..., str], call: Callable[..., dict[str, Any]]
) -> None:
    chat_id = make_chat("u_alice", "u_bob")
    answer = call("u_alice", upload(chat_id, size=MAX_MEDIA_BYTES, content_type="application/octet-stream"))
    assert answer["type"] == "MEDIA_UPLOAD"


# --- send with media -----------------------------------------------------------------------------


def test_send_attaches_the_chats_media_and_download_is_then_allowed(
    aws_env: Any, make_chat: Callable[..., str], call: Callable[..., dict[str, Any]]
) -> None:
    # Given alice uploaded media to her chat with bob, and its bytes are in the bucket
    chat_id = make_chat("u_alice", "u_bob")
    media_id = call("u_alice", upload(chat_id, size=5))["mediaId"]
    aws_env.s3.put_object(Bucket=aws_env.buckets["media"], Key=f"{chat_id}/{media_id}", Body=b"bytes")
    # And before any message carries it, nobody can download it
    refused = call("u_bob", download(chat_id, media_id))
    assert (refused["type"], refused["code"]) == ("ERROR", "NOT_FOUND")
    # When alice sends a message carrying it
    ack = call("u_alice", send(chat_id, [media_id]))
    # Then it is stored with the message, the media item is attached and no longer expires, and
    # the blob is tagged attached (the lifecycle expires only pending ones)
    assert ack["type"] == "ACK" and ack["seq"] == 1
    [message] = aws_env.messages(chat_id)
    assert list(message["mediaIds"]) == [media_id]
    [item] = media_items(aws_env, chat_id)
    assert item["attached"] is True and "expiresAt" not in item
    tags = aws_env.s3.get_object_tagging(Bucket=aws_env.buckets["media"], Key=f"{chat_id}/{media_id}")
    assert tags["TagSet"] == [{"Key": "state", "Value": "attached"}]
    # And bob (a member) gets a presigned GET URL for exactly that key
    url_frame = call("u_bob", download(chat_id, media_id))
    assert url_frame["type"] == "MEDIA_URL" and url_frame["mediaId"] == media_id
    assert url_frame["requestId"] == "r-down" and url_frame["expiresAt"].endswith("Z")
    parsed = urllib.parse.urlparse(url_frame["url"])
    assert parsed.path.endswith(f"/{chat_id}/{media_id}")
    query = urllib.parse.parse_qs(parsed.query)
    assert query["X-Amz-Expires"] == ["900"]
    # served as an opaque attachment
    assert query["response-content-disposition"] == ["attachment"]
    assert query["response-content-type"] == ["application/octet-stream"]


def test_send_with_the_same_media_twice_attaches_it_once(
    aws_env: Any, make_chat: Callable[..., str], call: Callable[..., dict[str, Any]]
) -> None:
    chat_id = make_chat("u_alice", "u_bob")
    media_id = uploaded(aws_env, call, "u_alice", chat_id)
    ack = call("u_alice", send(chat_id, [media_id, media_id]))
    assert ack["type"] == "ACK"
    [message] = aws_env.messages(chat_id)
    assert list(message["mediaIds"]) == [media_id, media_id]
    [item] = media_items(aws_env, chat_id)
    assert item["attached"] is True


@pytest.mark.parametrize("which", ["unknown", "other_chat"])
def test_send_with_foreign_or_unknown_media_is_refused_and_stores_nothing(
    aws_env: Any, make_chat: Callable[..., str], call: Callable[..., dict[str, Any]], which: str
) -> None:
    # Given mallory's chat with alice, and a chat of bob and carol holding media
    mine = make_chat("u_mallory", "u_alice")
    theirs = make_chat("u_bob", "u_carol")
    own_media = uploaded(aws_env, call, "u_mallory", mine)
    foreign = call("u_bob", upload(theirs))["mediaId"] if which == "other_chat" else "md_nosuchmedia"
    before = aws_env.scan("chats")
    # When mallory sends to her chat a message carrying her own media and the foreign one
    answer = call("u_mallory", send(mine, [own_media, foreign]))
    # Then NOT_FOUND echoing the clientMsgId, and nothing stored: no message, head, dedup or attach
    assert (answer["type"], answer["code"], answer["clientMsgId"]) == ("ERROR", "NOT_FOUND", "cm-1")
    assert aws_env.messages() == []
    assert aws_env.scan("chats") == before
    # And the foreign media is still not downloadable from her chat (nor from theirs: not a member)
    assert call("u_mallory", download(mine, foreign))["code"] == "NOT_FOUND"
    assert call("u_mallory", download(theirs, foreign))["code"] == "FORBIDDEN"
    # And a good send afterwards (a new clientMsgId) works
    assert call("u_mallory", send(mine, [own_media], client_msg_id="cm-2"))["seq"] == 1


def test_send_without_media_is_unchanged(
    aws_env: Any, make_chat: Callable[..., str], call: Callable[..., dict[str, Any]]
) -> None:
    chat_id = make_chat("u_alice", "u_bob")
    assert call("u_alice", send(chat_id, []))["seq"] == 1
    assert media_items(aws_env) == []


# --- download ------------------------------------------------------------------------------------


def test_download_rules_member_attached_same_answer_for_other_chats_and_unknown_media(
    aws_env: Any, make_chat: Callable[..., str], call: Callable[..., dict[str, Any]]
) -> None:
    # Given media attached in bob's chat with carol, and alice's chat with bob
    theirs = make_chat("u_bob", "u_carol")
    ours = make_chat("u_alice", "u_bob")
    media_id = uploaded(aws_env, call, "u_bob", theirs)
    assert call("u_bob", send(theirs, [media_id]))["type"] == "ACK"
    # Then a member of its chat gets a URL
    assert call("u_carol", download(theirs, media_id))["type"] == "MEDIA_URL"
    # And a non-member of that chat is FORBIDDEN
    forbidden = call("u_alice", download(theirs, media_id))
    assert (forbidden["code"], forbidden["requestId"]) == ("FORBIDDEN", "r-down")
    # And asked through another chat, it is NOT_FOUND, exactly like unknown media
    via_other = call("u_alice", download(ours, media_id))
    unknown = call("u_alice", download(ours, "md_nosuchmedia"))
    assert via_other["code"] == unknown["code"] == "NOT_FOUND"
    assert via_other["message"].replace(media_id, "X") == unknown["message"].replace("md_nosuchmedia", "X")
    # And an unknown chat is FORBIDDEN (not a member of it)
    assert call("u_alice", download("c_nosuchchat", media_id))["code"] == "FORBIDDEN"


def test_downloads_follow_the_history_window_of_members_added_later_and_removed(
    aws_env: Any, make_chat: Callable[..., str], call: Callable[..., dict[str, Any]]
) -> None:
    # Given media sent at seq 1 in alice's group, carol added at 2, media sent at 3, carol removed
    # at 4 and media sent at 5
    chat_id = make_chat("u_alice", "u_bob")
    before, during, after = (uploaded(aws_env, call, "u_alice", chat_id) for _ in range(3))
    assert call("u_alice", send(chat_id, [before], "cm-1"))["seq"] == 1
    add(services().ledger, caller("u_alice"), chat_id, ["u_carol"])
    assert call("u_alice", send(chat_id, [during], "cm-2"))["seq"] == 3
    remove(services().ledger, caller("u_alice"), chat_id, ["u_carol"])
    assert call("u_alice", send(chat_id, [after], "cm-3"))["seq"] == 5
    # Then carol, removed, still gets the media of her window (she syncs those messages) and
    # neither what came before her nor after her removal, both answered like unknown media
    assert call("u_carol", download(chat_id, during))["type"] == "MEDIA_URL"
    assert call("u_carol", download(chat_id, before))["code"] == "NOT_FOUND"
    assert call("u_carol", download(chat_id, after))["code"] == "NOT_FOUND"
    # And a founding member gets all three
    assert {call("u_bob", download(chat_id, m))["type"] for m in (before, during, after)} == {"MEDIA_URL"}
