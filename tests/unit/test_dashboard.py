# -*- test-case-name: tests.unit.test_dashboard -*-
"""
The dashboard's bookkeeping in memory: traffic per day and bucket, offline
proxies and draining connections (:mod:`labrelay.server.stats`) on a fake
clock, a proxy's traffic across sink changes, the dashboard's config keys,
and the page shipped in the package.
"""

import os

from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from labrelay.config import ConfigError, parse_server_config
from labrelay.server import stats as stats_module
from labrelay.server.dashboard import STATIC_DIR
from labrelay.server.proxy_base import ProxyBase
from labrelay.server.service import RelayServer
from labrelay.server.stats import BUCKETS, ServerStats
from labrelay.tls import server_tls_options

from ..support.dashboard import LOCAL
from ..support.fakes import StatsProxy


class StatsTests(SynchronousTestCase):
    """Days, buckets, offline proxies and draining connections."""

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1000 * 86400)
        # days of exactly 86400 s, independent of the local time zone
        self.stats = ServerStats(self.clock, day_of=lambda t: int(t // 86400))

    def test_days_roll_over(self):
        """Each day's bytes are kept apart, today first, for 7 days."""
        proxy = StatsProxy("a")
        self.stats.proxy_online(proxy)
        for day in range(9):
            proxy.moved[0] += 10 * (day + 1)
            proxy.moved[1] += day
            self.stats.sample()
            self.clock.advance(86400)
        self.clock.advance(-86400)
        entry = self.stats.get("a")
        self.assertEqual(
            entry.last_days(self.stats.today),
            ([90, 80, 70, 60, 50, 40, 30], [8, 7, 6, 5, 4, 3, 2]),
        )
        self.assertEqual((entry.total_in, entry.total_out), (450, 36))
        self.assertEqual(self.stats.today_totals(), (90, 8))

    def test_history_buckets(self):
        """Bytes land in the bucket of the sample; a day later they are gone
        from the history."""
        proxy = StatsProxy("a")
        self.stats.proxy_online(proxy)
        proxy.moved[0] = 100
        self.stats.sample()
        self.clock.advance(stats_module.BUCKET_SECONDS * 3)
        proxy.moved[0] = 150
        self.stats.sample()
        history, _ = self.stats.get("a").last_day_history(self.stats.bucket)
        self.assertEqual(len(history), BUCKETS)
        self.assertEqual((history[-4], history[-1], sum(history)), (100, 50, 150))
        self.clock.advance(86400 - stats_module.BUCKET_SECONDS)
        history, _ = self.stats.get("a").last_day_history(self.stats.bucket)
        self.assertEqual(sum(history), 50)
        self.clock.advance(stats_module.BUCKET_SECONDS * 10)
        history, _ = self.stats.get("a").last_day_history(self.stats.bucket)
        self.assertEqual(sum(history), 0)

    def test_offline_then_forgotten(self):
        """An offline proxy stays listed for 7 days after it closed."""
        proxy = StatsProxy("a")
        self.stats.proxy_online(proxy)
        self.stats.proxy_offline(proxy)
        self.assertEqual(self.stats.get("a").status, "offline")
        self.assertEqual(self.stats.type_counts(), {"tcp": 0})
        self.clock.advance(stats_module.FORGET_OFFLINE_SECONDS)
        self.stats.sample()
        self.assertIsNotNone(self.stats.get("a"))
        self.clock.advance(1)
        self.stats.sample()
        self.assertIsNone(self.stats.get("a"))

    def test_draining_and_restart(self):
        """A restarted proxy adds to the same figures, and the old object's
        still-open connection keeps being counted until it ends."""
        old = StatsProxy("a")
        self.stats.proxy_online(old)
        old.active_splices = 1
        old.moved = [10, 10]
        self.stats.proxy_offline(old)
        new = StatsProxy("a")
        self.stats.proxy_online(new)
        old.moved = [15, 10]
        new.moved = [1, 2]
        self.stats.sample()
        entry = self.stats.get("a")
        self.assertEqual(
            (entry.total_in, entry.total_out, entry.current_connections, entry.status),
            (16, 12, 1, "online"),
        )
        old.active_splices = 0
        old.moved = [20, 10]
        self.stats.sample()
        old.moved = [99, 99]  # no longer read
        self.stats.sample()
        self.assertEqual((entry.total_in, entry.current_connections), (21, 0))

    def test_type_change_starts_afresh(self):
        """A name coming back with another type starts new figures (frp)."""
        tcp = StatsProxy("a")
        self.stats.proxy_online(tcp)
        tcp.moved = [5, 5]
        self.stats.proxy_offline(tcp)
        self.stats.proxy_online(StatsProxy("a", "http"))
        entry = self.stats.get("a")
        self.assertEqual((entry.type, entry.total_in), ("http", 0))
        self.assertEqual(self.stats.by_type("tcp"), [])


class _Splice:
    def __init__(self, a_to_b=0, b_to_a=0):
        self.bytes_a_to_b = a_to_b
        self.bytes_b_to_a = b_to_a


class _Message:
    proxy_name = "p"
    use_encryption = use_compression = False


class ProxyTrafficTests(SynchronousTestCase):
    """ProxyBase.traffic reads open splices live, across a protocol
    switch."""

    def proxy(self):
        return ProxyBase(None, None, _Message())

    def test_open_and_closed(self):
        """Open sinks count live; closed ones are folded into the
        totals."""
        proxy = self.proxy()
        splice = _Splice()
        proxy.sink_opened(splice)
        splice.bytes_a_to_b, splice.bytes_b_to_a = 7, 3
        self.assertEqual(proxy.traffic(), (7, 3))
        splice.bytes_a_to_b = 9
        proxy.sink_closed(splice)
        self.assertEqual(proxy.traffic(), (9, 3))

    def test_switched_exchange(self):
        """After an Upgrade, the raw splice that replaced the exchange is
        read; nothing is counted twice."""
        for look_before_close in (True, False):
            proxy = self.proxy()
            exchange = _Splice()
            proxy.sink_opened(exchange)
            exchange.bytes_a_to_b = 100
            self.assertEqual(proxy.traffic(), (100, 0))
            # what VhostConnection.switch_protocols does
            raw = _Splice(5, 6)
            proxy.sink_replaced(exchange, raw)
            if look_before_close:
                self.assertEqual(proxy.traffic(), (105, 6))
            raw.bytes_a_to_b = 50
            proxy.sink_closed(raw)
            self.assertEqual(proxy.traffic(), (150, 6))
            self.assertEqual((proxy.active_splices, len(proxy._open)), (0, 0))
            self.assertEqual(proxy.total_connections, 1)


class PackagingTests(SynchronousTestCase):
    """The page is part of the package."""

    def test_static_files_present(self):
        """index.html, app.js and style.css sit in labrelay/server/static."""
        self.assertEqual(
            sorted(n for n in os.listdir(STATIC_DIR) if not n.startswith(".")),
            ["app.js", "index.html", "style.css"],
        )


class ConfigTests(SynchronousTestCase):
    """The dashboard's config keys, and what a server makes of them
    before it listens."""

    def test_allowed_hosts_config(self):
        """dashboard_allowed_hosts is a list of names; a scheme or a port
        is a clear error."""
        config = parse_server_config(
            "[common]\ndashboard_port = 7500\n"
            "dashboard_allowed_hosts = a.example, b.example\n"
        )
        self.assertEqual(config.dashboard_allowed_hosts, ("a.example", "b.example"))
        for bad in ("a.example:7500", "http://a.example"):
            with self.assertRaises(ConfigError) as e:
                parse_server_config(
                    "[common]\ndashboard_port = 7500\n"
                    f"dashboard_allowed_hosts = {bad}\n"
                )
            self.assertIn("dashboard_allowed_hosts", str(e.exception))

    def test_tls_mode_config(self):
        """dashboard_tls_mode needs both files; a bad file is one line at
        start-up."""
        with self.assertRaises(ConfigError) as e:
            parse_server_config(
                "[common]\ndashboard_port = 7500\n"
                "dashboard_tls_mode = true\n"
                "dashboard_tls_key_file = k.pem\n"
            )
        self.assertEqual(
            str(e.exception),
            "frps.ini: [common] "
            "dashboard_tls_cert_file: required when "
            "dashboard_tls_mode is true",
        )
        config = parse_server_config(
            "[common]\ndashboard_port = 7500\ndashboard_tls_mode = true\n"
            "dashboard_tls_cert_file = /nonexistent/c.pem\n"
            "dashboard_tls_key_file = /nonexistent/k.pem\n"
        )
        with self.assertRaises(SystemExit) as e:
            RelayServer(
                config,
                MemoryReactorClock(),
                server_tls_options(),
                listen=LOCAL,
                dashboard_listen=LOCAL,
            )
        self.assertIn("dashboard_tls_cert_file", str(e.exception))
        self.assertNotIn("\n", str(e.exception))

    def test_config_defaults(self):
        """The dashboard is off by default and listens on 127.0.0.1 (not
        frp's 0.0.0.0); keys that need dashboard_port warn without it."""
        config = parse_server_config("[common]\n")
        self.assertEqual(
            (config.dashboard_port, config.dashboard_addr, config.enable_prometheus),
            (0, "127.0.0.1", False),
        )
        self.assertIsNone(
            RelayServer(
                config, MemoryReactorClock(), server_tls_options(), listen=LOCAL
            ).dashboard
        )
        config = parse_server_config(
            "[common]\nbind_addr = 127.0.0.1\nenable_prometheus = true\n"
        )
        self.assertEqual(
            config.warnings,
            (
                "frps.ini [common] enable_prometheus: has no effect without "
                "dashboard_port",
            ),
        )
