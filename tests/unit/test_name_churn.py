# -*- test-case-name: tests.unit.test_name_churn -*-
"""
Proxy names that come and go, in memory: the dashboard's statistics and
the registry forget them within bounds.
"""

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from labrelay.server.ports import RESERVATION_SECONDS, PortAllocator
from labrelay.server.stats import BUCKETS, FORGET_OFFLINE_SECONDS, ServerStats

from ..support.fakes import StatsProxy


class StatsChurnTests(SynchronousTestCase):
    """ServerStats under name churn, with a fake clock."""

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1000 * 86400)
        self.limit = 100
        self.stats = ServerStats(
            self.clock, day_of=lambda t: int(t // 86400), max_tracked=lambda: self.limit
        )

    def churn(self, names, prefix="n"):
        for n in range(names):
            proxy = StatsProxy(f"{prefix}{n}")
            self.stats.proxy_online(proxy)
            self.clock.advance(1)
            self.stats.proxy_offline(proxy)

    def test_churn_is_bounded(self):
        """20,000 names come and go: at most max_tracked_proxies are kept,
        the most recently closed ones."""
        self.churn(20000)
        self.assertEqual(len(self.stats.proxies), self.limit)
        self.assertEqual(len(self.stats._offline), self.limit)
        self.assertIsNotNone(self.stats.get("n19999"))
        self.assertIsNotNone(self.stats.get(f"n{20000 - self.limit}"))
        self.assertIsNone(self.stats.get(f"n{19999 - self.limit}"))

    def test_online_names_are_never_forgotten(self):
        """Online proxies stay, beyond the bound if need be; offline names
        go first."""
        online = [StatsProxy(f"on{n}") for n in range(150)]
        for proxy in online:
            self.stats.proxy_online(proxy)
        self.churn(500)
        self.assertEqual(len(self.stats.proxies), 150)
        self.assertTrue(all(self.stats.get(p.name).online for p in online))
        # over the bound, a name going offline is the first to go
        self.stats.proxy_offline(online[0])
        self.assertEqual(len(self.stats.proxies), 149)
        self.assertIsNone(self.stats.get("on0"))

    def test_expired_names_go_without_a_dashboard(self):
        """Without any sampling, names offline longer than
        FORGET_OFFLINE_SECONDS are forgotten as others come and go."""
        self.limit = 0
        self.churn(300, prefix="old")
        self.clock.advance(FORGET_OFFLINE_SECONDS + 1)
        self.churn(10, prefix="new")
        self.assertEqual(
            sorted(self.stats.proxies), sorted(f"new{n}" for n in range(10))
        )

    def test_offline_names_let_go_of_their_proxies(self):
        """An offline name with no connection left keeps no reference to
        its proxy object (nor, through it, to its client), dashboard or
        not; one that never carried traffic costs no traffic history."""
        import gc
        import weakref

        proxy = StatsProxy("gone")
        self.stats.proxy_online(proxy)
        self.stats.proxy_offline(proxy)
        ref = weakref.ref(proxy)
        del proxy
        gc.collect()
        self.assertIsNone(ref())
        self.assertIsNone(self.stats.get("gone")._history)
        in_, out = self.stats.get("gone").last_day_history(self.stats.bucket)
        self.assertEqual((sum(in_), sum(out), len(in_)), (0, 0, BUCKETS))

    def test_a_name_coming_back_is_kept(self):
        """A name that comes back online is no longer a candidate for
        forgetting; its figures survive the churn of others."""
        proxy = StatsProxy("keep")
        self.stats.proxy_online(proxy)
        self.stats.proxy_offline(proxy)
        again = StatsProxy("keep")
        self.stats.proxy_online(again)
        self.churn(1000)
        self.assertTrue(self.stats.get("keep").online)


class PortChurnTests(SynchronousTestCase):
    """Remembered ports under name churn."""

    def test_remembered_ports_are_bounded(self):
        """Ports of 10,000 names: at most max_remembered are remembered,
        the newest; expired ones go as others are taken."""
        clock = Clock()
        ports = PortAllocator(clock, max_remembered=lambda: 500)
        for n in range(10000):
            ports.take(10000 + n % 5000, f"p{n}")
            ports.release(10000 + n % 5000, f"p{n}")
        self.assertEqual(ports.remembered, 500)
        self.assertEqual(ports.remembered_port("p9999"), 10000 + 4999)
        self.assertIsNone(ports.remembered_port("p0"))
        clock.advance(RESERVATION_SECONDS + 1)
        ports.take(1, "late")
        self.assertEqual(ports.remembered, 1)
