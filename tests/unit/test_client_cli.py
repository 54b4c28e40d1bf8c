"""The `chat` CLI's argument handling, the token subcommand and the interactive session's commands
over small fakes (the CLI end to end, encrypted, runs in tests/integration/test_cli.py)."""

import io
import json
from pathlib import Path
from types import SimpleNamespace

import jwt
import pytest

from chat_client import Message
from chat_client.cli import build_parser, main
from chat_client.cli_session import HELP, InteractiveSession
from chat_client.crypto.trust import DeviceNotice
from chat_client.secure import Decrypted

# The local stack's default HS256 secret is short by design (a dev secret).
pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")


def test_token_prints_a_token_for_the_user(capsys, monkeypatch):
    # Given no secret in the environment
    monkeypatch.delenv("CHAT_JWT_SECRET", raising=False)
    # When `chat token --user alice --device phone` runs
    assert main(["token", "--user", "alice", "--device", "phone"]) == 0
    # Then it prints one token signed with the local default secret
    token = capsys.readouterr().out.strip()
    claims = jwt.decode(token, "local-dev-secret", algorithms=["HS256"])
    assert (claims["sub"], claims["device"]) == ("alice", "phone")


def test_token_secret_comes_from_the_environment_or_the_flag(capsys, monkeypatch):
    # Given CHAT_JWT_SECRET set
    monkeypatch.setenv("CHAT_JWT_SECRET", "from-env")
    # When minting without and with --secret
    main(["token", "--user", "u"])
    from_env = capsys.readouterr().out.strip()
    main(["token", "--user", "u", "--secret", "from-flag"])
    from_flag = capsys.readouterr().out.strip()
    # Then the environment secret is the default and the flag overrides it
    assert jwt.decode(from_env, "from-env", algorithms=["HS256"])["sub"] == "u"
    assert jwt.decode(from_flag, "from-flag", algorithms=["HS256"])["sub"] == "u"


def test_connect_requires_a_user_or_a_token(capsys):
    # Given neither --user nor --token, When connecting, Then it refuses with exit code 2
    assert main(["connect"]) == 2
    assert "--user" in capsys.readouterr().err


def test_a_subcommand_is_required():
    # Given no subcommand, Then argparse exits with a usage error
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args([])
    assert exc.value.code == 2


async def test_received_messages_read_as_text_pending_or_failed_and_help_says_it_encrypts(tmp_path: Path):
    # Given a session writing to a buffer
    out = io.StringIO()
    session = InteractiveSession(SimpleNamespace(client=None), "alice", out, tmp_path)  # type: ignore[arg-type]
    message = Message("c_9", 4012, "m_88", "u_3", "d_1", b"<ciphertext>", [], "2026-11-28T03:21:07.123Z")
    # When a decrypted, a pending and a failed message are described
    ok = Decrypted(message, "ok", {"type": "text", "body": "hi \N{SNOWMAN}"})
    pending = Decrypted(message, "pending", reason="waiting")
    failed = Decrypted(message, "failed", reason="a replay")
    # Then each reads "[<chatId> #<seq>] <from>: ..." with the text, or why it cannot be read
    assert await session.describe(ok) == "[c_9 #4012] u_3: hi \N{SNOWMAN}"
    assert "waiting for the key" in await session.describe(pending)
    assert await session.describe(failed) == "[c_9 #4012] u_3: (could not be decrypted: a replay)"
    assert "before this device existed" in await session.describe(Decrypted(message, "no_key"))
    # And the help text says everything is encrypted end to end, and names the new commands
    session.emit(HELP)
    assert "encrypted end to end" in out.getvalue()
    assert all(cmd in out.getvalue() for cmd in ("/verify USER", "/send-file PATH", "/accept USER"))
    assert "plain UTF-8" not in out.getvalue()


def test_device_notices_warn_of_a_changed_key_and_say_how_to_resume():
    # Given a verified user's device that changed its key, and an unverified user's new device
    changed = DeviceNotice("bob", "d1", "key_changed", "k", verified_user=True)
    added = DeviceNotice("carol", "d2", "added", "k", verified_user=False)
    # Then the first warns that sending is refused until /accept, the second says what changed
    assert "refused" in InteractiveSession.describe_notice(changed)
    assert "/accept bob" in InteractiveSession.describe_notice(changed)
    assert InteractiveSession.describe_notice(added).startswith("* carol added a device (d2)")


class FakeMembershipClient:
    """What the membership commands call on the SDK, recorded; getMembers answers in two pages."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, list[str]]] = []

    async def add_members(self, chat_id: str, members: list[str]) -> dict[str, object]:
        self.calls.append(("add", chat_id, members))
        return {"type": "CHAT", "chatId": chat_id, "memberCount": 3}

    async def remove_members(self, chat_id: str, members: list[str]) -> dict[str, object]:
        self.calls.append(("remove", chat_id, members))
        return {"type": "CHAT", "chatId": chat_id, "memberCount": 2}

    async def get_members(self, chat_id: str, cursor: str | None = None) -> dict[str, object]:
        if cursor is None:
            return {"members": [{"userId": "alice", "role": "admin"}], "next": "alice"}
        return {"members": [{"userId": "bob", "role": "member"}], "next": None}


def over(client: FakeMembershipClient, out: io.StringIO) -> InteractiveSession:
    secure = SimpleNamespace(client=client, remove_members=client.remove_members)
    return InteractiveSession(secure, "alice", out, Path("unused"))  # type: ignore[arg-type]


async def test_membership_commands_act_on_the_current_chat():
    # Given a session with group g_1 open
    out = io.StringIO()
    client = FakeMembershipClient()
    session = over(client, out)
    await session.handle("/open g_1")
    # When alice adds carol, removes bob, and lists the members
    await session.handle("/add carol")
    await session.handle("/remove bob")
    await session.handle("/members")
    # Then the SDK was asked for each on g_1, and the output shows counts and every page of members
    assert client.calls == [("add", "g_1", ["carol"]), ("remove", "g_1", ["bob"])]
    text = out.getvalue()
    assert "g_1 now has 3 members" in text and "g_1 now has 2 members" in text
    assert "* alice (admin)" in text and "* bob (member)" in text


async def test_membership_commands_need_an_open_chat():
    # Given a session with no chat open
    out = io.StringIO()
    client = FakeMembershipClient()
    session = over(client, out)
    # When alice tries /add
    await session.handle("/add carol")
    # Then she is told to open a chat, and nothing was asked of the server
    assert "no chat open" in out.getvalue()
    assert client.calls == []


def test_notifications_reads_the_stacks_push_log_for_one_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    # Given a push log with an FCM and an APNs notification, as the local stack records them
    log = tmp_path / "push.jsonl"
    fcm = {"GCM": '{"data": {"chatId": "c_1", "count": "2"}}'}
    apns = {"APNS": '{"aps": {"badge": 1}, "chatId": "g_7", "count": 1}'}
    log.write_text(
        "\n".join(
            json.dumps({"at": 0, "platform": p, "token": t, "message": m})
            for p, t, m in (("GCM", "tok-a", fcm), ("APNS", "tok-b", apns))
        )
        + "\n"
    )
    # When `chat notifications` is asked for tok-b's
    assert main(["notifications", "--log", str(log), "--token", "tok-b"]) == 0
    # Then only that one is printed, with its chat and count
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].endswith("APNS tok-b: chat g_7, 1 new")
