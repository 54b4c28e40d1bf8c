"""The integration scenarios that need only the WebSocket, run against the stack named by
CHAT_WS_URL (see conftest.py). They are the integration tests' own functions, imported: pytest
collects them here and resolves `connect`, `new_user` and `stack` from this directory's conftest.

Left out, because they need the local stack itself rather than its protocol: tokens minted with
the stack's secret (raw duplicate sends, the sending device's raw socket, bad-token handshakes),
the 10,000-member and 300-member groups (thousands of throwaway users, and a receipts page size
set for the test), and starting and stopping a stack.
"""

from tests.integration.test_bad_input import (
    test_a_bad_frame_gets_a_clear_error_stores_nothing_and_the_connection_stays_usable,
    test_a_non_member_gets_forbidden_and_learns_nothing_about_the_chat,
    test_an_error_echoes_the_frames_request_id_and_client_msg_id,
    test_from_is_taken_from_the_token_not_the_frame,
    test_the_sdk_reports_a_refused_handshake_without_retrying,
)
from tests.integration.test_groups import (
    test_a_member_may_leave,
    test_a_removed_member_can_no_longer_send_sync_or_get_pushes,
    test_admin_adds_a_member_whose_history_starts_at_the_change_and_everyone_sees_it_in_order,
    test_only_admins_change_members_and_a_refused_change_changes_nothing,
)
from tests.integration.test_message_path import (
    test_a_connection_dropped_mid_stream_loses_nothing_after_reconnect,
    test_a_new_member_learns_of_the_chat_from_sync_heads,
    test_a_sent_message_is_acked_and_delivered_to_the_other_member,
    test_an_offline_member_gets_everything_in_order_with_paging_on_reconnect,
    test_creating_a_direct_chat_twice_from_either_side_gives_the_same_chat,
    test_three_members_sending_concurrently_get_one_gapless_total_order,
)
from tests.integration.test_multi_device import (
    test_a_device_connecting_for_the_first_time_gets_the_whole_history,
    test_four_devices_of_two_users_each_get_every_message_but_their_own,
)
from tests.integration.test_presence import (
    test_a_flapping_user_yields_one_online_and_one_offline,
    test_a_strangers_subscription_is_forbidden_and_gets_no_pushes,
    test_a_subscription_is_renewed_by_heartbeat_or_subscribing_again,
    test_offline_only_when_the_last_device_leaves,
    test_subscribe_answers_the_current_status_then_pushes_online_and_offline,
)
from tests.integration.test_receipts import (
    test_a_repeated_receipt_is_forwarded_once,
    test_a_stranger_can_neither_receipt_nor_ask,
    test_both_devices_of_the_sender_learn_that_the_message_was_read,
    test_the_sdk_tells_the_sender_by_itself_that_messages_were_delivered,
)
from tests.integration.test_typing import (
    test_typing_in_a_chat_one_is_not_in_is_forbidden,
    test_typing_is_relayed_to_the_other_member_and_not_stored,
)

__all__ = [
    "test_a_bad_frame_gets_a_clear_error_stores_nothing_and_the_connection_stays_usable",
    "test_a_connection_dropped_mid_stream_loses_nothing_after_reconnect",
    "test_a_device_connecting_for_the_first_time_gets_the_whole_history",
    "test_a_flapping_user_yields_one_online_and_one_offline",
    "test_a_member_may_leave",
    "test_a_new_member_learns_of_the_chat_from_sync_heads",
    "test_a_non_member_gets_forbidden_and_learns_nothing_about_the_chat",
    "test_a_removed_member_can_no_longer_send_sync_or_get_pushes",
    "test_a_repeated_receipt_is_forwarded_once",
    "test_a_sent_message_is_acked_and_delivered_to_the_other_member",
    "test_a_stranger_can_neither_receipt_nor_ask",
    "test_a_strangers_subscription_is_forbidden_and_gets_no_pushes",
    "test_a_subscription_is_renewed_by_heartbeat_or_subscribing_again",
    "test_admin_adds_a_member_whose_history_starts_at_the_change_and_everyone_sees_it_in_order",
    "test_an_error_echoes_the_frames_request_id_and_client_msg_id",
    "test_an_offline_member_gets_everything_in_order_with_paging_on_reconnect",
    "test_both_devices_of_the_sender_learn_that_the_message_was_read",
    "test_creating_a_direct_chat_twice_from_either_side_gives_the_same_chat",
    "test_four_devices_of_two_users_each_get_every_message_but_their_own",
    "test_from_is_taken_from_the_token_not_the_frame",
    "test_offline_only_when_the_last_device_leaves",
    "test_only_admins_change_members_and_a_refused_change_changes_nothing",
    "test_subscribe_answers_the_current_status_then_pushes_online_and_offline",
    "test_the_sdk_reports_a_refused_handshake_without_retrying",
    "test_the_sdk_tells_the_sender_by_itself_that_messages_were_delivered",
    "test_three_members_sending_concurrently_get_one_gapless_total_order",
    "test_typing_in_a_chat_one_is_not_in_is_forbidden",
    "test_typing_is_relayed_to_the_other_member_and_not_stored",
]
