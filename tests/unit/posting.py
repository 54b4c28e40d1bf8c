"""What the push and deliver tests (test_pusher.py, test_deliver.py) post and expect: a frame, its
recipients connected, and the posts a botocore Stubber on the management API is to answer (200,
410, or another failure). What the Pusher sends back to the delivery queue is conftest.py's
`enqueued`."""

from __future__ import annotations

import json

from botocore.stub import Stubber

from chat_backend.dal.connections import ConnectionRegistry
from chat_backend.models.queue_payloads import Recipient
from tests.unit.helpers import online

FRAME = json.dumps({"type": "MESSAGE", "chatId": "c_9", "seq": 4012, "from": "u_alice"})
BOB = Recipient(user_id="u_bob", device_id="d_phone", connection_id="conn-bob")
CAROL = Recipient(user_id="u_carol", device_id="d_phone", connection_id="conn-carol")
DAVE = Recipient(user_id="u_dave", device_id="d_phone", connection_id="conn-dave")


def connect(registry: ConnectionRegistry, *recipients: Recipient) -> None:
    for r in recipients:
        online(registry, r.user_id, r.device_id, r.connection_id)


def expect_post(stub: Stubber, connection_id: str, frame: str = FRAME) -> None:
    stub.add_response("post_to_connection", {}, {"ConnectionId": connection_id, "Data": frame.encode()})


def expect_error(stub: Stubber, connection_id: str, code: str, status: int, frame: str = FRAME) -> None:
    stub.add_client_error(
        "post_to_connection",
        service_error_code=code,
        service_message=code,
        http_status_code=status,
        expected_params={"ConnectionId": connection_id, "Data": frame.encode()},
    )


def expect_gone(stub: Stubber, connection_id: str, frame: str = FRAME) -> None:
    expect_error(stub, connection_id, "GoneException", 410, frame)


THROTTLED = ("LimitExceededException", 429)
SERVER_ERROR = ("InternalServerErrorException", 500)
