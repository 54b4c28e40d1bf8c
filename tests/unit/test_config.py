"""A function's configuration (config.py, services.py, handler_kit.py): each function is built
from its own wiring entry; a resource it uses but whose name its environment lacks fails its first
invocation; one it does not use is refused where it is called, locally as on AWS."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from chat_backend import wiring
from chat_backend.config import MissingResource, Resources
from chat_backend.handler_kit import lambda_handler
from chat_backend.services import services
from tests.unit.conftest import AwsEnv

FUNCTIONS_DIR = Path(__file__).resolve().parents[2] / "functions"


def test_a_function_missing_the_name_of_a_resource_it_uses_fails_at_once_naming_it(
    aws_env: AwsEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the send function's environment without its messages table
    monkeypatch.delenv(wiring.table("messages").env_var)
    # When its resources are read / Then it fails, naming the variable: no default name is used
    with pytest.raises(MissingResource, match="function send: MESSAGES_TABLE not set"):
        Resources.of("send", dict(os.environ))


def test_each_function_gets_the_names_of_what_it_uses_and_nothing_else(aws_env: AwsEnv) -> None:
    # Given the environment the unit tests set up (every resource's name, as the local stack does)
    # When the keys function's resources are read
    keys = Resources.of("keys", dict(os.environ))
    # Then it has exactly what its wiring entry uses
    assert set(keys.names) == set(wiring.function("keys").uses)
    assert keys["keys"] == aws_env.tables["keys"]
    # And a resource it does not use has a name no grant covers
    assert keys["inbox"] == "inbox-not-granted-to-keys"


def test_an_invocation_builds_its_own_functions_services_and_cannot_reach_others_resources(
    aws_env: AwsEnv, lambda_context: Any
) -> None:
    # Given a handler of the presence function that reads the inbox table (which presence does
    # not use) through its services
    seen: dict[str, Any] = {}

    @lambda_handler("presence")
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        s = services()
        seen["function"], seen["presence"] = s.resources.function, s.resources["presence"]
        s.inbox.pending("u_alice", "d1", 10)
        return {}

    # When it is invoked / Then the call is refused where it is made (no table by that name)
    with pytest.raises(ClientError):
        handler({}, lambda_context)
    # And the services it had were the presence function's, with its own table's real name
    assert seen == {"function": "presence", "presence": aws_env.tables["presence"]}
    # And outside any invocation, services() are those of every resource again
    assert services().resources.function is None


@pytest.mark.parametrize("function", [f.name for f in wiring.FUNCTIONS])
def test_every_handler_names_its_own_function(function: str) -> None:
    # Given functions/<name>/handler.py / Then its handler_kit entry point names <name>
    source = (FUNCTIONS_DIR / function / "handler.py").read_text()
    named = re.findall(r"(?:lambda_handler|route_handler|record_handler)\(\s*\"(\w+)\"", source)
    assert named == [function]


def test_a_name_the_wiring_does_not_know_fails_at_import() -> None:
    with pytest.raises(KeyError, match="no function 'no_such_function' in the wiring table"):
        lambda_handler("no_such_function")
