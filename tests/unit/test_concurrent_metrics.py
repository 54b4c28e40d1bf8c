"""The local Lambda workers' Metrics (local_stack/concurrent_metrics.py): many invocations at once
in one process share powertools' metric set, so adding and flushing take turns, and the set is
cleared after a flush even with metrics disabled (the local stack's default)."""

from __future__ import annotations

import threading

import pytest
from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit

from local_stack import concurrent_metrics


@pytest.fixture
def metrics() -> Metrics:
    """Metrics as a worker's functions have them: the locked provider installed."""
    metrics = Metrics(namespace="Chat")
    concurrent_metrics.install(metrics)
    return metrics


def test_the_metric_set_is_cleared_after_a_flush_even_when_metrics_are_disabled(
    metrics: Metrics, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given metrics turned off, as the local stack runs by default
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    # When an invocation counts something and flushes
    metrics.add_metric(name="Heartbeats", unit=MetricUnit.Count, value=1)
    metrics.flush_metrics()
    # Then nothing is printed and nothing is left to grow across invocations
    assert '"_aws"' not in capsys.readouterr().out
    assert metrics.provider.metric_set == {}


def test_an_invocation_adding_a_metric_waits_for_another_ones_flush(metrics: Metrics) -> None:
    # Given the provider's lock held, as by an invocation's flush in progress
    provider = metrics.provider
    assert isinstance(provider, concurrent_metrics.LockedEMFProvider)
    with provider.lock:
        # When another invocation's thread adds a metric
        adding = threading.Thread(
            target=lambda: metrics.add_metric(name="SendsAcked", unit=MetricUnit.Count, value=1)
        )
        adding.start()
        adding.join(timeout=0.2)
        # Then it waits (the flush never sees the set change under it)
        assert adding.is_alive()
        assert "SendsAcked" not in provider.metric_set
    # And once the flush is done, its metric is added to the shared set
    adding.join(timeout=5)
    assert provider.metric_set["SendsAcked"]["Value"] == [1.0]
    provider.clear_metrics()
