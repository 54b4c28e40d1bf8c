"""Which endpoint each AWS service the stack uses gets: the emulators `make run` starts (DynamoDB
Local; moto for SQS, S3 and SNS), or, with LOCALSTACK_HOST set, a LocalStack already running there
(through localstack-client). The gateway, the pollers and the functions are the stack's own
either way."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import boto3

SERVICES = ("dynamodb", "dynamodbstreams", "sqs", "s3", "sns")
# The variables boto3 reads a service's endpoint from (what the functions are pointed at).
ENDPOINT_ENV = {
    "dynamodb": "AWS_ENDPOINT_URL_DYNAMODB",
    "dynamodbstreams": "AWS_ENDPOINT_URL_DYNAMODB_STREAMS",
    "sqs": "AWS_ENDPOINT_URL_SQS",
    "s3": "AWS_ENDPOINT_URL_S3",
    "sns": "AWS_ENDPOINT_URL_SNS",
}
ACCESS_KEY = SECRET_KEY = "local"


def localstack_host(env: Mapping[str, str]) -> str | None:
    """LOCALSTACK_HOST (`host` or `host:port`), or None: then the stack starts its own emulators."""
    return env.get("LOCALSTACK_HOST", "").strip() or None


@dataclass(frozen=True)
class Endpoints:
    urls: dict[str, str]  # service -> endpoint URL, for each of SERVICES
    localstack_host: str | None = None

    @classmethod
    def emulators(cls, dynamodb_local_url: str, moto_url: str) -> Endpoints:
        return cls(
            {
                "dynamodb": dynamodb_local_url,
                "dynamodbstreams": dynamodb_local_url,
                **{service: moto_url for service in ("sqs", "s3", "sns")},
            }
        )

    @classmethod
    def localstack(cls, host: str) -> Endpoints:
        from localstack_client.config import get_service_endpoints  # the `local` extra

        endpoints = get_service_endpoints(host)
        return cls({service: endpoints[service] for service in SERVICES}, localstack_host=host)

    def function_env(self) -> dict[str, str]:
        return {ENDPOINT_ENV[service]: url for service, url in self.urls.items()}

    def client(self, service: str, region: str) -> Any:
        """A client for the stack's own calls (bootstrap, pollers)."""
        if self.localstack_host is not None:
            from localstack_client.session import Session

            session = Session(
                ACCESS_KEY, SECRET_KEY, region_name=region, localstack_host=self.localstack_host
            )
            return session.client(service)
        plain = boto3.session.Session(ACCESS_KEY, SECRET_KEY, region_name=region)
        return plain.client(service, endpoint_url=self.urls[service])  # type: ignore[call-overload]
