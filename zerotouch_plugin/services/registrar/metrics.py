"""The registrar's Prometheus metrics (``GET /metrics``, admin certificate required, like the
rest of the admin API: the counts name how many devices a domain has and where they stand).

Besides the request metrics of services/_metrics.py: voucher requests and enrollments by
outcome, and, read from the database at scrape time, devices by state, the hand-off queue by
state, the event stream's subscribers and queued events, and each webhook's backlog.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence

from prometheus_client import Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from zerotouch_plugin.errors import ZerotouchError
from zerotouch_plugin.services._metrics import HttpMetrics
from zerotouch_plugin.services.registrar.events import EventHub
from zerotouch_plugin.services.registrar.webhooks import WebhookWorker
from zerotouch_plugin.store.registrar import RegistrarRepository

__all__ = ["registrar_metrics"]

log = logging.getLogger(__name__)

# Endpoint -> (counter, its "kind" label): the outcome of what the endpoint does.
_OUTCOMES: dict[str, tuple[str, str]] = {
    "/.well-known/brski/requestvoucher": ("voucher_requests", "voucher"),
    "/.well-known/est/simpleenroll": ("enrollments", "enroll"),
    "/.well-known/est/simplereenroll": ("enrollments", "reenroll"),
}


class _StoreCollector(Collector):
    """What the database and the running event machinery hold, at scrape time."""

    def __init__(
        self, repo: RegistrarRepository, hub: EventHub, webhooks: Sequence[WebhookWorker]
    ) -> None:
        self._repo = repo
        self._hub = hub
        self._webhooks = webhooks

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "zerotouch_registrar_store_up", "Whether the database answered this scrape"
        )
        try:
            devices = self._repo.devices_by_state()
            handoffs = self._repo.handoffs_by_state()
            last_id = self._repo.last_event_id()
        except ZerotouchError as exc:
            log.warning("metrics: the database did not answer: %s", exc.one_line())
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        by_state = GaugeMetricFamily(
            "zerotouch_registrar_devices", "Devices on record by state", labels=["state"]
        )
        for state, n in sorted(devices.items()):
            by_state.add_metric([state], n)
        yield by_state
        queue = GaugeMetricFamily(
            "zerotouch_registrar_handoff_queue",
            "Day-0 hand-offs by state (pending: the queue's depth)",
            labels=["state"],
        )
        for state in ("pending", "applied", "failed"):
            queue.add_metric([state], handoffs.get(state, 0))
        yield queue
        yield GaugeMetricFamily(
            "zerotouch_registrar_last_event_id", "The newest device event's id", value=last_id
        )
        yield GaugeMetricFamily(
            "zerotouch_registrar_event_subscribers",
            "Open GET /admin/events streams",
            value=self._hub.subscribers,
        )
        yield GaugeMetricFamily(
            "zerotouch_registrar_event_queue",
            "Events waiting in the event streams' queues",
            value=self._hub.queued,
        )
        yield CounterMetricFamily(
            "zerotouch_registrar_event_subscribers_dropped",
            "Event streams closed because they fell too far behind",
            value=self._hub.dropped_total,
        )
        backlog = GaugeMetricFamily(
            "zerotouch_registrar_webhook_backlog",
            "Events not yet delivered to a webhook",
            labels=["webhook"],
        )
        delivered = CounterMetricFamily(
            "zerotouch_registrar_webhook_deliveries",
            "Webhook deliveries by outcome (a failed attempt is retried)",
            labels=["webhook", "outcome"],
        )
        for hook in self._webhooks:
            backlog.add_metric([hook.hook.name], max(0, last_id - hook.cursor))
            delivered.add_metric([hook.hook.name, "delivered"], hook.delivered)
            delivered.add_metric([hook.hook.name, "failed"], hook.failures)
        yield backlog
        yield delivered


def registrar_metrics(
    repo: RegistrarRepository,
    hub: EventHub,
    webhooks: Sequence[WebhookWorker],
    *,
    streaming: frozenset[str],
) -> HttpMetrics:
    """The registrar's metrics: requests, outcomes, and the store collector."""
    metrics = HttpMetrics("registrar", streaming=streaming)
    counters = {
        "voucher_requests": Counter(
            "zerotouch_registrar_voucher_requests",
            "Pledge voucher-requests by outcome (ok: a voucher relayed; else the reason)",
            ["kind", "outcome"],
            registry=metrics.registry,
        ),
        "enrollments": Counter(
            "zerotouch_registrar_enrollments",
            "EST enrollments by kind and outcome (ok: an LDevID issued; else the reason)",
            ["kind", "outcome"],
            registry=metrics.registry,
        ),
    }

    def outcome(endpoint: str, _status: int, reason: str) -> None:
        found = _OUTCOMES.get(endpoint)
        if found is not None:
            name, kind = found
            counters[name].labels(kind, reason).inc()

    metrics.observe(outcome)
    metrics.registry.register(_StoreCollector(repo, hub, webhooks))
    return metrics
