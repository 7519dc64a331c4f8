# -*- test-case-name: tests.integration.test_metrics -*-
"""
``enable_prometheus``: ``/metrics`` on the dashboard port, with frp's metric
names and labels, parsed back with prometheus_client's own parser after real
traffic through a real tunnel.
"""

from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from twisted.trial.unittest import TestCase

from ..support.dashboard import DashboardRelay, close_user, push, tunnel
from ..support.harness import async_test
from ..support.web import Http

FRP_FAMILIES = {
    "frp_server_client_counts": "gauge",
    "frp_server_proxy_counts": "gauge",
    "frp_server_connection_counts": "gauge",
    "frp_server_traffic_in": "unknown",
    "frp_server_traffic_out": "unknown",
}


async def scrape(http, relay, **kw):
    """{family name: (type, {(sample name, labels): value})}."""
    code, headers, body = await http.get(relay.url("/metrics"), **kw)
    assert code == 200, (code, body)
    assert headers.getRawHeaders(b"content-type")[0].startswith(b"text/plain; version=")
    families = {}
    for family in text_string_to_metric_families(body.decode()):
        families[family.name] = (
            family.type,
            {
                (s.name, tuple(sorted(s.labels.items()))): s.value
                for s in family.samples
            },
        )
    return families


class MetricsTests(TestCase):
    """frp's Prometheus metrics."""

    timeout = 60

    @async_test
    async def test_names_and_values_follow_traffic(self):
        """Every frp metric is there with frp's sample names and labels, and
        the values follow clients, proxies, connections and bytes."""
        relay = await DashboardRelay(self, "enable_prometheus = true\n").start()
        http = Http(self)
        families = await scrape(http, relay)
        self.assertEqual(
            {name: families[name][0] for name in FRP_FAMILIES}, FRP_FAMILIES
        )
        self.assertEqual(
            families["frp_server_client_counts"][1],
            {("frp_server_client_counts", ()): 0.0},
        )
        self.assertIn("process_resident_memory_bytes", families)

        _, port = await tunnel(self, relay, name="echo")
        user = await push(self, port, 2500)
        families = await scrape(http, relay)
        labels = (("name", "echo"), ("type", "tcp"))
        self.assertEqual(
            families["frp_server_client_counts"][1],
            {("frp_server_client_counts", ()): 1.0},
        )
        self.assertEqual(
            families["frp_server_proxy_counts"][1],
            {("frp_server_proxy_counts", (("type", "tcp"),)): 1.0},
        )
        self.assertEqual(
            families["frp_server_connection_counts"][1],
            {("frp_server_connection_counts", labels): 1.0},
        )
        # live: counted while the connection is open
        self.assertEqual(
            families["frp_server_traffic_in"][1],
            {("frp_server_traffic_in", labels): 2500.0},
        )
        self.assertEqual(
            families["frp_server_traffic_out"][1],
            {("frp_server_traffic_out", labels): 2500.0},
        )

        await push(self, port, 500, user)
        await close_user(user, relay)
        families = await scrape(http, relay)
        self.assertEqual(
            families["frp_server_connection_counts"][1],
            {("frp_server_connection_counts", labels): 0.0},
        )
        self.assertEqual(
            families["frp_server_traffic_in"][1],
            {("frp_server_traffic_in", labels): 3000.0},
        )

    @async_test
    async def test_exposition_text(self):
        """The traffic series carry frp's exact sample names (no _total
        suffix), so queries written for frps work unchanged."""
        relay = await DashboardRelay(self, "enable_prometheus = true\n").start()
        http = Http(self)
        _, port = await tunnel(self, relay, name="ssh")
        await close_user(await push(self, port, 10), relay)
        _, _, body = await http.get(relay.url("/metrics"))
        lines = body.decode().splitlines()
        self.assertIn('frp_server_traffic_in{name="ssh",type="tcp"} 10.0', lines)
        self.assertIn('frp_server_traffic_out{name="ssh",type="tcp"} 10.0', lines)
        self.assertIn("frp_server_client_counts 1.0", lines)
        self.assertFalse([line for line in lines if "_total{name=" in line])

    @async_test
    async def test_own_registry(self):
        """The metrics live in the dashboard's own registry, not
        prometheus_client's global one (two servers do not collide)."""
        first = await DashboardRelay(self, "enable_prometheus = true\n").start()
        second = await DashboardRelay(self, "enable_prometheus = true\n").start()
        self.assertIsNot(
            first.server.dashboard.metrics_registry,
            second.server.dashboard.metrics_registry,
        )
        self.assertNotIn(
            "frp_server_client_counts", {m.name for m in REGISTRY.collect()}
        )

    @async_test
    async def test_auth_and_off(self):
        """/metrics needs the dashboard credentials, and is 404 without
        enable_prometheus."""
        relay = await DashboardRelay(
            self, "enable_prometheus = true\ndashboard_user = u\ndashboard_pwd = p\n"
        ).start()
        http = Http(self)
        code, _, _ = await http.get(relay.url("/metrics"))
        self.assertEqual(code, 401)
        families = await scrape(http, relay, user="u", password="p")
        self.assertIn("frp_server_proxy_counts", families)
        off = await DashboardRelay(self).start()
        code, _, _ = await http.get(off.url("/metrics"))
        self.assertEqual(code, 404)
