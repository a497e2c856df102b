"""Prometheus metrics for connmw, through ``prometheus_client`` (``pip install "connmw[prometheus]"``).

Usage::

    from prometheus_client import make_asgi_app      # or start_http_server, make_wsgi_app
    from connmw import ConnectionMiddleware
    from connmw.contrib.prometheus import register

    app = ConnectionMiddleware(app, max_requests_per_connection=1000)
    register(app)                                     # into prometheus_client's default registry

The collector reads :meth:`~connmw.ConnectionMiddleware.stats` when Prometheus
scrapes, so requests pay nothing for it. Metrics (``namespace`` ``connmw``):

================================================  =========  =====================================
``connmw_responses_kept_total``                   counter    HTTP/1.x responses that kept the
                                                             connection
``connmw_responses_closed_total{reason}``         counter    HTTP/1.x responses that closed it,
                                                             per reason
``connmw_http2_responses_total``                  counter    HTTP/2 and HTTP/3 responses
``connmw_requests_per_connection``                histogram  requests per connection, over the
                                                             connections no longer tracked (only
                                                             when connections are tracked)
``connmw_connections_tracked``                    gauge      connections with state now
``connmw_connections_tracked_peak``               gauge      the most at once
``connmw_requests_in_flight``                     gauge      only with the overload limits on
``connmw_draining``                               gauge      1 while draining
``connmw_goaways_total``                          counter    HTTP/2 connections retired with GOAWAY
================================================  =========  =====================================

Several worker processes (gunicorn ``--workers N``, uvicorn ``--workers N``): each
process has its own middleware and its own counts, and this collector reports the
process it runs in. ``prometheus_client``'s multiprocess mode aggregates only its
own ``Counter``/``Gauge``/``Histogram`` objects, never custom collectors.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import REGISTRY, Collector, CollectorRegistry

from .._controls import Controls

__all__ = ["ConnmwCollector", "register"]


class ConnmwCollector(Collector):
    """A ``prometheus_client`` collector over one middleware's :meth:`stats`.

    :param middleware: a :class:`~connmw.ConnectionMiddleware` or
        :class:`~connmw.WSGIConnectionMiddleware`.
    :param namespace: the metric name prefix.
    :param labels: constant labels on every sample (e.g. ``{"app": "api"}`` when
        several middlewares report to one registry).
    """

    def __init__(
        self, middleware: Controls, *, namespace: str = "connmw", labels: Mapping[str, str] | None = None
    ) -> None:
        if not isinstance(middleware, Controls):
            raise TypeError(
                "ConnmwCollector needs a ConnectionMiddleware or WSGIConnectionMiddleware, "
                f"not {type(middleware).__name__} {middleware!r}"
            )
        self.middleware = middleware
        self.namespace = namespace
        self.labels = dict(labels or {})

    def _name(self, name: str) -> str:
        return f"{self.namespace}_{name}" if self.namespace else name

    def collect(self) -> Iterator[Metric]:
        stats = self.middleware.stats()
        names = list(self.labels)
        values = list(self.labels.values())

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            family = CounterMetricFamily(self._name(name), doc, labels=names)
            family.add_metric(values, value)
            return family

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            family = GaugeMetricFamily(self._name(name), doc, labels=names)
            family.add_metric(values, value)
            return family

        responses = stats["responses"]
        yield counter("responses_kept", "HTTP/1.x responses that kept the connection", responses["kept"])
        closed = CounterMetricFamily(
            self._name("responses_closed"),
            "HTTP/1.x responses that closed the connection, per reason",
            labels=[*names, "reason"],
        )
        for reason, count in responses["closed"].items():
            closed.add_metric([*values, reason], count)
        yield closed
        yield counter("http2_responses", "HTTP/2 and HTTP/3 responses", responses["http2"])
        dist = stats["requests_per_connection"]
        if dist is not None:
            histogram = HistogramMetricFamily(
                self._name("requests_per_connection"),
                "Requests served per connection, over the connections no longer tracked",
                labels=names,
            )
            # Bounds as Prometheus writes them ("1.0", "+Inf"), so series join with other clients'.
            buckets = [(b if b == "+Inf" else repr(float(b)), n) for b, n in dist["buckets"].items()]
            histogram.add_metric(values, buckets, sum_value=dist["sum"])
            yield histogram
        connections = stats["connections"]
        if connections["tracked"] is not None:
            yield gauge("connections_tracked", "Connections with state now", connections["tracked"])
        if connections["peak"] is not None:
            yield gauge(
                "connections_tracked_peak", "The most connections tracked at once", connections["peak"]
            )
        if stats["in_flight"] is not None:
            yield gauge("requests_in_flight", "Requests inside the application now", stats["in_flight"])
        yield gauge("draining", "1 while the middleware drains", 1 if stats["draining"] else 0)
        yield counter("goaways", "HTTP/2 connections retired with GOAWAY", stats["goaways"])


def register(
    middleware: Controls,
    registry: CollectorRegistry = REGISTRY,
    *,
    namespace: str = "connmw",
    labels: Mapping[str, str] | None = None,
) -> ConnmwCollector:
    """Register a :class:`ConnmwCollector` for ``middleware``; returns it (for
    ``registry.unregister``)."""
    collector = ConnmwCollector(middleware, namespace=namespace, labels=labels)
    registry.register(collector)
    return collector
