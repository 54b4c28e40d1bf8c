"""The `chat` CLI's argument handling and the token subcommand (the interactive part is tested in
test_client_sdk.py against the fake server, through a pipe)."""

import io

import jwt
import pytest

from chat_client import Message
from chat_client.cli import InteractiveSession, build_parser, main

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


def test_incoming_message_format_and_help_mentions_encryption():
    # Given a session writing to a buffer
    out = io.StringIO()
    session = InteractiveSession(client=None, user="alice", out=out)  # type: ignore[arg-type]
    message = Message(
        "c_9", 4012, "m_88", "u_3", "d_1", "hi \N{SNOWMAN}".encode(), [], "2026-11-28T03:21:07.123Z"
    )
    # When it is formatted, Then it reads "[<chatId> #<seq>] <from>: <text>"
    assert session.format_message(message) == "[c_9 #4012] u_3: hi \N{SNOWMAN}"
    # And the help text says real apps encrypt
    session.emit(__import__("chat_client.cli", fromlist=["HELP"]).HELP)
    assert "encrypt" in out.getvalue()


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


async def test_membership_commands_act_on_the_current_chat():
    # Given a session with group g_1 open
    out = io.StringIO()
    client = FakeMembershipClient()
    session = InteractiveSession(client=client, user="alice", out=out)  # type: ignore[arg-type]
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
    session = InteractiveSession(client=client, user="alice", out=out)  # type: ignore[arg-type]
    # When alice tries /add
    await session.handle("/add carol")
    # Then she is told to open a chat, and nothing was asked of the server
    assert "no chat open" in out.getvalue()
    assert client.calls == []
