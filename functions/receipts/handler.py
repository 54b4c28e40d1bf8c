"""Routes `receipt` (store the watermark, tell the senders; no answer unless it fails) and
`receipts` (a sender asks who has a message: answers RECEIPTS)."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from chat_backend.logic.receipts import list_receipts, record_receipt
from chat_backend.models.client_frames import ReceiptFrame, ReceiptsQueryFrame
from chat_backend.models.events import Caller
from chat_backend.observability import count, logger, metrics, tracer
from chat_backend.routes import handle_routes
from chat_backend.services import services


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    s = services()

    def record(caller: Caller, frame: ReceiptFrame) -> None:
        record_receipt(s.receipts, s.consent, s.pusher, s.summaries_queue, caller, frame)
        count("ReceiptsRecorded")  # repeats included: they are accepted (and change nothing)

    return handle_routes(
        event,
        {
            "receipt": (ReceiptFrame, record),
            "receipts": (
                ReceiptsQueryFrame,
                lambda caller, frame: list_receipts(s.receipts, caller, frame, s.settings.receipts_page_size),
            ),
        },
        s.guard,
    )
