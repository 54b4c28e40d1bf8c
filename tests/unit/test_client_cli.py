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
