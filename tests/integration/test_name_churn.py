# -*- test-case-name: tests.integration.test_name_churn -*-
"""
Proxy names are chosen by clients: their churn (register, close, register
under a new name) must leave the per-name state bounded, and the lists the
dashboard serves paged.
"""

import json

from twisted.trial.unittest import TestCase

from labrelay.protocol import messages
from labrelay.server.dashboard_api import HISTORY_PAGE, MAX_PAGE

from ..support.dashboard import DashboardRelay
from ..support.fakes import StatsProxy
from ..support.frp_peer import FrpPeer
from ..support.harness import async_test, within
from ..support.web import Http


class ChurnOverTheWireTests(TestCase):
    """A real client churning names through a real relay."""

    timeout = 60

    @async_test
    async def test_relay_state_stays_bounded(self):
        """300 tcp proxies registered and closed under new names, with
        max_tracked_proxies = 50: the stats and the port memory hold at
        most 50 names, and /api/history says so."""
        relay = await DashboardRelay(
            self, "tcp_mux = false\nmax_tracked_proxies = 50\n"
        ).start()
        peer = await self.log_in(relay)
        for n in range(300):
            peer.send(
                messages.NewProxy(
                    proxy_name=f"churn{n}", proxy_type="tcp", remote_port=0
                )
            )
            peer.send(messages.CloseProxy(proxy_name=f"churn{n}"))
        answers = await within(peer.wait_messages(messages.NewProxyResp, 300), 30)
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
        self.addCleanup(
            lambda: (
                None
                if peer.closed.called
                else (peer.transport.abortConnection(), within(peer.closed))[1]
            )
        )
        await peer.log_in()
        return peer

    async def ping(self, peer):
        """A Pong after everything sent so far was handled."""
        count = len([m for m in peer.messages if isinstance(m, messages.Pong)])
        peer.send(messages.Ping())
        await peer.wait_messages(messages.Pong, count + 1)


class HistoryPagingTests(TestCase):
    """/api/history (and the optional paging of the lists) on a relay
    that knows 2,000 proxy names."""

    timeout = 30

    async def relay_with_names(self, count=2000):
        relay = await DashboardRelay(self).start()
        for n in range(count):
            proxy = StatsProxy(f"p{n:05d}")
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
        self.assertEqual(
            (code, first["total"], first["offset"], len(first["proxies"])),
            (200, 2000, 0, HISTORY_PAGE),
        )
        self.assertLess(len(body), HISTORY_PAGE * 2048)
        big = await http.json(relay.url("/api/history?limit=100000"))
        self.assertEqual((big["limit"], len(big["proxies"])), (MAX_PAGE, MAX_PAGE))
        seen = []
        for offset in range(0, 2000, MAX_PAGE):
            page = await http.json(
                relay.url(f"/api/history?offset={offset}&limit={MAX_PAGE}")
            )
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
        for query in ("limit=x", "offset=-1", "limit=1e9", "offset=99999999999"):
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
        self.assertEqual(
            (page["total"], [e["name"] for e in page["proxies"]]),
            (250, [f"p{n:05d}" for n in range(10, 15)]),
        )
        every = await http.json(relay.url("/api/proxy/tcp"))
        self.assertEqual((len(every["proxies"]), "total" in every), (250, False))
        clients = await http.json(relay.url("/api/clients?limit=5"))
        self.assertEqual((clients["total"], clients["clients"]), (0, []))
