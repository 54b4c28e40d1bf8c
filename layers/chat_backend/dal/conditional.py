"""Conditional writes and transactions: DynamoDB's refusals as exceptions of the data layer.

A store makes its conditional writes through `conditional` / `conditional_or_none` and its
transactions through `transact`, instead of catching botocore's ClientError itself, and turns a
refusal into what its callers know: an answer (False, None) or a domain exception (errors.py).
Any other error of the call goes up unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from botocore.exceptions import ClientError

from chat_backend.dal.aws import cancellation_codes, is_conditional_failure

# A single-item write that meets an ongoing transaction on its item is refused with this (nothing
# written): a store for which that means "the item moved" counts it as a failed condition.
TRANSACTION_CONFLICT = "TransactionConflictException"


class ConditionFailed(Exception):
    """A write's ConditionExpression did not hold: nothing was written. `item` is the item as it
    is when the write asked for it (ReturnValuesOnConditionCheckFailure=ALL_OLD), else None."""

    def __init__(self, item: dict[str, Any] | None) -> None:
        super().__init__("condition failed")
        self.item = item


class TransactionCancelled(Exception):
    """A TransactWriteItems was cancelled: nothing was written. `failed_conditions` holds the
    positions of the items whose condition did not hold (empty: cancelled for another reason,
    such as a conflict with another transaction)."""

    def __init__(self, codes: list[str]) -> None:
        super().__init__(f"transaction cancelled: {codes}")
        self.codes = codes
        self.failed_conditions = frozenset(
            i for i, code in enumerate(codes) if code == "ConditionalCheckFailed"
        )


def conditional(
    write: Callable[..., Any], /, *, also_refused: tuple[str, ...] = (), **request: Any
) -> dict[str, Any]:
    """`write(**request)` (a PutItem, UpdateItem or DeleteItem with a condition) and its response;
    ConditionFailed when the condition did not hold, or the call was refused with one of the
    error codes `also_refused`."""
    try:
        return cast(dict[str, Any], write(**request))
    except ClientError as exc:
        if not is_conditional_failure(exc) and exc.response["Error"]["Code"] not in also_refused:
            raise
        raise ConditionFailed(cast(dict[str, Any] | None, exc.response.get("Item"))) from exc


def conditional_or_none(write: Callable[..., Any], /, **request: Any) -> dict[str, Any] | None:
    """As `conditional`, but None (instead of ConditionFailed) when the condition did not hold."""
    try:
        return conditional(write, **request)
    except ConditionFailed:
        return None


def put_new(ddb: Any, table: str, item: dict[str, Any], sort_key: str = "sk", **request: Any) -> None:
    """PutItem of an item whose key must be new (a table with a sort key named `sort_key`):
    ConditionFailed when an item has that key already (nothing is overwritten)."""
    conditional(
        ddb.put_item,
        TableName=table,
        Item=item,
        ConditionExpression=f"attribute_not_exists({sort_key})",
        **request,
    )


def transact(ddb: Any, items: list[dict[str, Any]]) -> None:
    """TransactWriteItems; TransactionCancelled when DynamoDB cancelled it."""
    try:
        ddb.transact_write_items(TransactItems=items)
    except ClientError as exc:
        codes = cancellation_codes(exc)
        if codes is None:
            raise
        raise TransactionCancelled(codes) from exc


def put_op(table: str, item: dict[str, Any], condition: str | None = None) -> dict[str, Any]:
    """A Put of a transaction (only if `condition` holds, when given)."""
    put = {"TableName": table, "Item": item}
    return {"Put": (put | {"ConditionExpression": condition}) if condition else put}


def delete_op(table: str, key: dict[str, Any]) -> dict[str, Any]:
    """A Delete of a transaction."""
    return {"Delete": {"TableName": table, "Key": key}}
