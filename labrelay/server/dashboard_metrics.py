# -*- test-case-name: tests.integration.test_metrics -*-
"""
The dashboard's ``/metrics`` (with ``enable_prometheus``): frps's metric
names from a collector reading :mod:`labrelay.server.stats` at scrape time,
in a registry of its own (not prometheus_client's global one).

prometheus_client writes a counter's samples with a ``_total`` suffix,
which frp's Go exporter does not; so that queries and Grafana boards
written for frps work unchanged, ``frp_server_traffic_in`` and
``frp_server_traffic_out`` keep frp's sample names and are exposed untyped
(PromQL's ``rate()`` works on them all the same).

prometheus_client is imported only when metrics are on.
"""

from twisted.web.resource import Resource


class FrpCollector:
    """frps's Prometheus metrics, read from the stats at scrape time."""

    def __init__(self, context):
        self._context = context

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily, Metric

        stats = self._context.stats
        stats.sample()
        yield GaugeMetricFamily(
            "frp_server_client_counts",
            "The current client counts of frps",
            value=len(self._context.registry.controls),
        )
        proxies = GaugeMetricFamily(
            "frp_server_proxy_counts", "The current proxy counts", labels=["type"]
        )
        for kind, count in sorted(stats.type_counts().items()):
            proxies.add_metric([kind], count)
        yield proxies
        connections = GaugeMetricFamily(
            "frp_server_connection_counts",
            "The current connection counts",
            labels=["name", "type"],
        )
        # frp's names for what are counters; see the module docstring.
        traffic_in = Metric("frp_server_traffic_in", "The total in traffic", "unknown")
        traffic_out = Metric(
            "frp_server_traffic_out", "The total out traffic", "unknown"
        )
        for entry in stats.all():
            labels = {"name": entry.name, "type": entry.type}
            connections.add_metric([entry.name, entry.type], entry.current_connections)
            traffic_in.add_sample("frp_server_traffic_in", labels, entry.total_in)
            traffic_out.add_sample("frp_server_traffic_out", labels, entry.total_out)
        yield connections
        yield traffic_in
        yield traffic_out


def metrics_registry(context):
    """A registry of its own (not prometheus_client's global one): frp's
    metrics plus the process_* ones, as frps's Go exporter has."""
    from prometheus_client import CollectorRegistry, ProcessCollector

    registry = CollectorRegistry(auto_describe=False)
    registry.register(FrpCollector(context))
    ProcessCollector(registry=registry)
    return registry


class MetricsResource(Resource):
    """``/metrics``: the registry in Prometheus's text format."""

    isLeaf = True

    def __init__(self, registry):
        super().__init__()
        self._registry = registry

    def render_GET(self, request):
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode())
        return generate_latest(self._registry)
