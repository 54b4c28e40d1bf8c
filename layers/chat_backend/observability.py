"""Powertools Logger, Metrics and Tracer shared by every function.

- Service name: POWERTOOLS_SERVICE_NAME (set by the wiring). Metrics namespace:
  POWERTOOLS_METRICS_NAMESPACE, default "Chat".
- Tracing runs only on Lambda with active tracing: powertools turns the Tracer off outside Lambda
  (no X-Ray daemon to talk to), and the local stack and unit tests also set
  POWERTOOLS_TRACE_DISABLED. On Lambda it patches botocore, so every DynamoDB, SQS and
  @connections call is a subsegment of the invocation's trace.
- Every handler is decorated, outermost first: `@logger.inject_lambda_context`,
  `@tracer.capture_lambda_handler`, `@metrics.log_metrics(...)`, then any event-source decorator.
  Handlers record metrics from what the use case returned (`count`), never inside logic.
- Powertools as it is: Lambda runs one invocation at a time in a process. (The local stack, which
  runs many at once in one process, adapts Metrics for that itself when it loads the handlers.)
"""

from __future__ import annotations

import os
import warnings

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

DEFAULT_METRICS_NAMESPACE = "Chat"
METRICS_NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or DEFAULT_METRICS_NAMESPACE


def quiet_empty_metrics_warning() -> None:
    """An invocation that counted nothing (a sync, a typing relay) is normal: powertools' warning
    about an empty metric set would otherwise be logged by every such invocation."""
    warnings.filterwarnings("ignore", message="No application metrics to publish")


quiet_empty_metrics_warning()


logger = Logger()
metrics = Metrics(namespace=METRICS_NAMESPACE)
tracer = Tracer(patch_modules=["botocore"])


def count(name: str, value: int = 1) -> None:
    """Add to a Count metric of this invocation (flushed as one EMF blob by `log_metrics`)."""
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
