"""Routes `receipt` (store the watermark, tell the senders; no answer unless it fails) and
`receipts` (a sender asks who has a message: answers RECEIPTS)."""

from aws_lambda_powertools.utilities.typing import LambdaContext

from chat_backend.handler_kit import route_handler
from chat_backend.logic.receipts import list_receipts, record_receipt
from chat_backend.models.client_frames import ReceiptFrame, ReceiptsQueryFrame
from chat_backend.models.events import Caller
from chat_backend.observability import count
from chat_backend.routes import RouteTable
from chat_backend.services import Services


def receipt_routes(s: Services, context: LambdaContext) -> RouteTable:
    def record(caller: Caller, frame: ReceiptFrame) -> None:
        record_receipt(s.receipts, s.consent, s.pusher, s.summaries_queue, caller, frame)
        count("ReceiptsRecorded")  # repeats included: they are accepted (and change nothing)

    return {
        "receipt": (ReceiptFrame, record),
        "receipts": (
            ReceiptsQueryFrame,
            lambda caller, frame: list_receipts(s.receipts, caller, frame, s.settings.receipts_page_size),
        ),
    }


handler = route_handler("receipts", receipt_routes)
