"""Routes `createChat`, `addMembers`, `removeMembers`, `getMembers`, `listChats`."""

from aws_lambda_powertools.utilities.typing import LambdaContext

from chat_backend.handler_kit import route_handler
from chat_backend.logic.chats import create_chat, list_chats
from chat_backend.logic.members import add_members, get_members, remove_members
from chat_backend.models.client_frames import (
    AddMembersFrame,
    CreateChatFrame,
    GetMembersFrame,
    ListChatsFrame,
    RemoveMembersFrame,
)
from chat_backend.routes import RouteTable
from chat_backend.services import Services


def chat_routes(s: Services, context: LambdaContext) -> RouteTable:
    store, ledger, grace_s = s.store, s.ledger, s.settings.hole_grace_s

    def time_left() -> float:
        return context.get_remaining_time_in_millis() / 1000

    return {
        "createChat": (
            CreateChatFrame,
            lambda caller, frame: create_chat(
                store, s.consent, s.io_pool, caller, frame, s.member_jobs, time_left
            ),
        ),
        "addMembers": (
            AddMembersFrame,
            lambda caller, frame: add_members(
                ledger, s.consent, s.io_pool, caller, frame, grace_s, s.member_jobs, time_left
            ),
        ),
        "removeMembers": (
            RemoveMembersFrame,
            lambda caller, frame: remove_members(ledger, caller, frame, grace_s),
        ),
        "getMembers": (GetMembersFrame, lambda caller, frame: get_members(store, caller, frame)),
        "listChats": (ListChatsFrame, lambda caller, frame: list_chats(s.listing, s.io_pool, caller, frame)),
    }


handler = route_handler("chats", chat_routes)
