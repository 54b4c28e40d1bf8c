"""Powertools Metrics for the local stack's Lambda workers, which run many invocations at once on
threads of one process (Lambda runs one at a time per instance, so the functions' own
chat_backend/observability.py uses powertools as it is).

Powertools keeps one metric set per process: `install` gives the functions' Metrics a provider
whose lock keeps one invocation's flush from iterating the set while another adds to it. With
POWERTOOLS_METRICS_DISABLED (the local stack's default) powertools never clears the set; this
provider does, so it stays small. Installed before the handlers load: their `log_metrics`
decorators bind the provider there is then.
"""

from __future__ import annotations

import threading

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricResolution, MetricUnit
from aws_lambda_powertools.metrics.functions import is_metrics_disabled
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider


class LockedEMFProvider(AmazonCloudWatchEMFProvider):
    lock = threading.RLock()

    def add_metric(
        self, name: str, unit: MetricUnit | str, value: float, resolution: MetricResolution | int = 60
    ) -> None:
        with self.lock:
            super().add_metric(name=name, unit=unit, value=value, resolution=resolution)

    def flush_metrics(self, raise_on_empty_metrics: bool = False) -> None:
        with self.lock:
            super().flush_metrics(raise_on_empty_metrics=raise_on_empty_metrics)
            if is_metrics_disabled():
                self.clear_metrics()


def install(metrics: Metrics) -> None:
    """Give `metrics` the locked provider, over the same namespace, service and sets."""
    provider = metrics.provider
    metrics.provider = LockedEMFProvider(
        metric_set=provider.metric_set,
        dimension_set=provider.dimension_set,
        namespace=provider.namespace,
        metadata_set=provider.metadata_set,
        service=provider.service,
        default_dimensions=provider.default_dimensions,
        function_name=provider.function_name,
    )
