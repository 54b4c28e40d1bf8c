"""cdk-nag (AwsSolutions pack): every acknowledged finding goes through `acknowledge`, with its reason."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Validations
from constructs import IConstruct


def acknowledge(construct: IConstruct, rule: str, reason: str) -> None:
    """Accept one finding of `rule` (e.g. "AwsSolutions-IAM5[Resource::*]") on `construct` and below."""
    Validations.of(construct).acknowledge(Acknowledgment(id=rule, reason=reason))
