# -*- test-case-name: tests.test_name_churn -*-
"""
Proxy names are chosen by clients: their churn (register, close, register
under a new name) must leave the per-name state bounded, and the lists the
dashboard serves paged.
"""

import json

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from labrelay.protocol import messages
from labrelay.server.dashboard_api import HISTORY_PAGE, MAX_PAGE
from labrelay.server.ports import RESERVATION_SECONDS, PortAllocator
from labrelay.server.stats import (BUCKETS, FORGET_OFFLINE_SECONDS,
                                   ServerStats)

from .harness import async_test, within
from .test_dashboard import DashboardRelay, Http, _Proxy
from .test_hostile import FrpPeer


class StatsChurnTests(SynchronousTestCase):
    """ServerStats under name churn, with a fake clock."""

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1000 * 86400)
        self.limit = 100
        self.stats = ServerStats(self.clock, day_of=lambda t: int(t // 86400),
                                 max_tracked=lambda: self.limit)

    def churn(self, names, prefix="n"):
        for n in range(names):
            proxy = _Proxy(f"{prefix}{n}")
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
        online = [_Proxy(f"on{n}") for n in range(150)]
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
        self.assertEqual(sorted(self.stats.proxies),
                         sorted(f"new{n}" for n in range(10)))

    def test_offline_names_let_go_of_their_proxies(self):
        """An offline name with no connection left keeps no reference to
        its proxy object (nor, through it, to its client), dashboard or
        not; one that never carried traffic costs no traffic history."""
        import gc
        import weakref
        proxy = _Proxy("gone")
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
        proxy = _Proxy("keep")
        self.stats.proxy_online(proxy)
        self.stats.proxy_offline(proxy)
        again = _Proxy("keep")
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


class ChurnOverTheWireTests(TestCase):
    """A real client churning names through a real relay."""

    timeout = 60

    @async_test
    async def test_relay_state_stays_bounded(self):
        """300 tcp proxies registered and closed under new names, with
        max_tracked_proxies = 50: the stats and the port memory hold at
        most 50 names, and /api/history says so."""
        relay = await DashboardRelay(
            self, "tcp_mux = false\nmax_tracked_proxies = 50\n").start()
        peer = await self.log_in(relay)
        for n in range(300):
            peer.send(messages.NewProxy(proxy_name=f"churn{n}",
                                        proxy_type="tcp", remote_port=0))
            peer.send(messages.CloseProxy(proxy_name=f"churn{n}"))
        answers = await within(peer.wait_messages(messages.NewProxyResp,
                                                  300), 30)
        self.assertEqual([a.error for a in answers if a.error], [])
        server = relay.server
        await within(self.ping(peer))
        self.assertEqual(server.registry.proxies, {})
        self.assertLessEqual(len(server.stats.proxies), 50)
        self.assertLessEqual(server.ports.remembered, 50)
        history = await Http(self).json(relay.url("/api/history"))
        self.assertLessEqual(history["total"], 50)
        self.assertEqual(len(history["proxies"]), HISTORY_PAGE)

    async def log_in(self, relay):
        from twisted.internet import reactor
        from twisted.internet.endpoints import TCP4ClientEndpoint
        from twisted.internet.protocol import Factory
        peer = FrpPeer()
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", relay.port)
        await within(endpoint.connect(Factory.forProtocol(lambda: peer)))
        self.addCleanup(lambda: None if peer.closed.called else (
            peer.transport.abortConnection(), within(peer.closed))[1])
        await peer.log_in()
        return peer

    async def ping(self, peer):
        """A Pong after everything sent so far was handled."""
        count = len([m for m in peer.messages if isinstance(m,
                                                            messages.Pong)])
        peer.send(messages.Ping())
        await peer.wait_messages(messages.Pong, count + 1)


class HistoryPagingTests(TestCase):
    """/api/history (and the optional paging of the lists) on a relay
    that knows 2,000 proxy names."""

    timeout = 30

    async def relay_with_names(self, count=2000):
        relay = await DashboardRelay(self).start()
        for n in range(count):
            proxy = _Proxy(f"p{n:05d}")
            relay.server.stats.proxy_online(proxy)
            relay.server.stats.proxy_offline(proxy)
        return relay

    @async_test
    async def test_history_is_paged(self):
        """The default page holds HISTORY_PAGE proxies and the total; a
        larger limit is clamped to MAX_PAGE; the pages cover every name
        once; one response stays small."""
        relay = await self.relay_with_names()
        http = Http(self)
        code, _, body = await http.get(relay.url("/api/history"))
        first = json.loads(body)
        self.assertEqual((code, first["total"], first["offset"],
                          len(first["proxies"])), (200, 2000, 0, HISTORY_PAGE))
        self.assertLess(len(body), HISTORY_PAGE * 2048)
        big = await http.json(relay.url("/api/history?limit=100000"))
        self.assertEqual((big["limit"], len(big["proxies"])),
                         (MAX_PAGE, MAX_PAGE))
        seen = []
        for offset in range(0, 2000, MAX_PAGE):
            page = await http.json(relay.url(
                f"/api/history?offset={offset}&limit={MAX_PAGE}"))
            seen += [entry["name"] for entry in page["proxies"]]
        self.assertEqual(seen, [f"p{n:05d}" for n in range(2000)])
        past = await http.json(relay.url("/api/history?offset=5000"))
        self.assertEqual(past["proxies"], [])

    @async_test
    async def test_bad_paging_arguments(self):
        """A limit or offset that is not a small non-negative integer is
        400, not a traceback."""
        relay = await self.relay_with_names(3)
        http = Http(self)
        for query in ("limit=x", "offset=-1", "limit=1e9",
                      "offset=99999999999"):
            code, _, _ = await http.get(relay.url(f"/api/history?{query}"))
            self.assertEqual(code, 400, query)
        code, _, _ = await http.get(relay.url("/api/proxy/tcp?limit=-"))
        self.assertEqual(code, 400)

    @async_test
    async def test_lists_page_on_request(self):
        """/api/proxy/{type} pages when asked (with a total) and lists
        everything, as frp, when not."""
        relay = await self.relay_with_names(250)
        http = Http(self)
        page = await http.json(relay.url("/api/proxy/tcp?offset=10&limit=5"))
        self.assertEqual((page["total"], [e["name"] for e in page["proxies"]]),
                         (250, [f"p{n:05d}" for n in range(10, 15)]))
        every = await http.json(relay.url("/api/proxy/tcp"))
        self.assertEqual((len(every["proxies"]), "total" in every),
                         (250, False))
        clients = await http.json(relay.url("/api/clients?limit=5"))
        self.assertEqual((clients["total"], clients["clients"]), (0, []))
