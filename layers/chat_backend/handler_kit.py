"""What every `functions/<name>/handler.py` is made of, so that each is only its own wiring of
event to use case:

- `lambda_handler`: the powertools wrapping every Lambda entry point has (observability.py);
- `route_handler`: a function serving routes, from its route table (routes.py parses each frame
  and maps every error to an ERROR frame, in one place);
- `record_handler`: a queue consumer that handles each record on its own (a record that raises
  fails alone, and SQS gives it back).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast

from aws_lambda_powertools.utilities.batch import BasePartialBatchProcessor, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.typing import LambdaContext

from chat_backend import wiring
from chat_backend.observability import logger, metrics, tracer
from chat_backend.routes import RouteTable, handle_routes
from chat_backend.services import Services, running, services

Handler = Callable[[dict[str, Any], LambdaContext], dict[str, Any]]
H = TypeVar("H", bound=Callable[..., Any])


def lambda_handler(function: str) -> Callable[[H], H]:
    """The entry point of the wiring table's `function`: logged with its invocation's context,
    traced, its metrics flushed as one EMF blob at the end (cold starts counted), and its
    `services()` built from that function's own resources (config.Resources). Outermost first, as
    observability.py says; an event-source decorator goes below this one."""
    wiring.function(function)  # a name the wiring table does not know fails at import

    def wrap(handler: H) -> H:
        @functools.wraps(handler)
        def as_function(*args: Any, **kwargs: Any) -> Any:
            with running(function):
                return handler(*args, **kwargs)

        with_metrics = metrics.log_metrics(capture_cold_start_metric=True)(as_function)
        return cast(H, logger.inject_lambda_context(tracer.capture_lambda_handler(with_metrics)))

    return wrap


def route_handler(function: str, routes_of: Callable[[Services, LambdaContext], RouteTable]) -> Handler:
    """The handler of a function serving routes: each invocation serves its route key from the
    table `routes_of` builds (route key -> frame model, use case) with this function's services."""

    @lambda_handler(function)
    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        s = services()
        return handle_routes(event, routes_of(s, context), s.guard)

    return handler


def record_handler(
    function: str, processor: BasePartialBatchProcessor, handle_record: Callable[..., None]
) -> Callable[[dict[str, Any], LambdaContext], PartialItemFailureResponse]:
    """The handler of a queue consumer taking its batch record by record: a record whose
    `handle_record(record)` raises is reported as a batch item failure, the others are done.
    `handle_record` may also take `lambda_context` (powertools passes it by that name)."""

    @lambda_handler(function)
    def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
        return process_partial_response(
            event=event, record_handler=handle_record, processor=processor, context=context
        )

    return handler
