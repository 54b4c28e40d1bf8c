"""DynamoDB tables, one per `wiring.TABLES` entry."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from constructs import Construct

from chat_backend import wiring

_ATTRIBUTE_TYPES = {
    "S": dynamodb.AttributeType.STRING,
    "N": dynamodb.AttributeType.NUMBER,
    "B": dynamodb.AttributeType.BINARY,
}
_STREAM_VIEWS = {
    "NEW_IMAGE": dynamodb.StreamViewType.NEW_IMAGE,
    "NEW_AND_OLD_IMAGES": dynamodb.StreamViewType.NEW_AND_OLD_IMAGES,
}


def _attribute(key: tuple[str, wiring.AttrType] | None) -> dynamodb.Attribute | None:
    if key is None:
        return None
    name, attr_type = key
    return dynamodb.Attribute(name=name, type=_ATTRIBUTE_TYPES[attr_type])


class Tables(Construct):
    """On-demand tables with point-in-time recovery. They hold user data, so they outlive the stack."""

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.by_name: dict[str, dynamodb.Table] = {spec.name: self._table(spec) for spec in wiring.TABLES}

    def _table(self, spec: wiring.Table) -> dynamodb.Table:
        table = dynamodb.Table(
            self,
            spec.name,
            partition_key=_attribute(spec.partition_key),
            sort_key=_attribute(spec.sort_key),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            time_to_live_attribute=spec.ttl_attribute,
            stream=_STREAM_VIEWS[spec.stream] if spec.stream else None,
            removal_policy=RemovalPolicy.RETAIN,
        )
        for index in spec.indexes:
            table.add_global_secondary_index(
                index_name=index.name,
                partition_key=_attribute(index.partition_key),
                sort_key=_attribute(index.sort_key),
                projection_type=dynamodb.ProjectionType(index.projection),
            )
        return table
