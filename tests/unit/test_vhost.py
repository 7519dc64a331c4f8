# -*- test-case-name: tests.unit.test_vhost -*-
"""
The HTTP vhost in memory: request and response header rewriting, http
proxy registration, and one vhost connection and its exchange on
StringTransports and a Clock.
"""

import base64

from twisted.trial.unittest import SynchronousTestCase

from labrelay.config import parse_server_config
from labrelay.errors import ProxyError
from labrelay.protocol import messages
from labrelay.server.vhost import HttpProxy
from labrelay.server.vhost.headers import (
    basic_auth,
    response_headers,
    rewrite_request_headers,
    upgrade_type,
)
from labrelay.server.vhost.routes import RouteTable

from ..support.fakes import MemoryVhostMixin, Stub


class RewriteTests(SynchronousTestCase):
    """The request and response header rewriting, without sockets."""

    def rewrite(self, headers, **kw):
        kw.setdefault("client_ip", "127.0.0.1")
        kw.setdefault("original_host", b"a.example.org")
        return rewrite_request_headers(headers, **kw)

    def test_vector_request(self):
        """The captured frps request: Connection: close dropped, forwarding
        headers appended in order, user headers kept in order."""
        out = self.rewrite(
            [
                (b"Host", b"jupyter.web.example.test"),
                (b"User-Agent", b"labrelay-vector/1"),
                (b"Accept", b"*/*"),
                (b"Connection", b"close"),
            ],
            original_host=b"jupyter.web.example.test",
        )
        self.assertEqual(
            out,
            [
                (b"Host", b"jupyter.web.example.test"),
                (b"User-Agent", b"labrelay-vector/1"),
                (b"Accept", b"*/*"),
                (b"X-Forwarded-For", b"127.0.0.1"),
                (b"X-Forwarded-Host", b"jupyter.web.example.test"),
                (b"X-Forwarded-Proto", b"http"),
                (b"X-Real-IP", b"127.0.0.1"),
            ],
        )

    def test_hop_by_hop_removed(self):
        """Hop-by-hop headers and those named in Connection are removed;
        body framing headers are never forwarded as received: the framing
        given (h11's reading) takes the place of the first of them."""
        out = self.rewrite(
            [
                (b"Host", b"h"),
                (b"Connection", b"keep-alive, X-Private"),
                (b"Keep-Alive", b"timeout=5"),
                (b"X-Private", b"1"),
                (b"Proxy-Authorization", b"Basic eDp5"),
                (b"TE", b"trailers"),
                (b"Upgrade", b"websocket"),
                (b"Transfer-Encoding", b"chunked"),
                (b"Content-Length", b"3"),
                (b"Authorization", b"Basic eDp5"),
            ],
            framing=[(b"Transfer-Encoding", b"chunked")],
        )
        names = [name for name, _ in out]
        for gone in (
            b"Connection",
            b"Keep-Alive",
            b"X-Private",
            b"TE",
            b"Proxy-Authorization",
            b"Upgrade",
            b"Content-Length",
        ):
            self.assertNotIn(gone, names)
        self.assertEqual(
            out[1:3],
            [(b"Transfer-Encoding", b"chunked"), (b"Authorization", b"Basic eDp5")],
        )
        self.assertEqual(names.count(b"Transfer-Encoding"), 1)
        # without a framing given, none is sent
        out = self.rewrite([(b"Host", b"h"), (b"Content-Length", b"3")])
        self.assertNotIn(b"Content-Length", [name for name, _ in out])

    def test_upgrade_kept(self):
        """An upgrade request keeps Upgrade with Connection: Upgrade."""
        headers = [
            (b"Host", b"h"),
            (b"Connection", b"keep-alive, Upgrade"),
            (b"Upgrade", b"websocket"),
        ]
        kind = upgrade_type(headers)
        self.assertEqual(kind, b"websocket")
        out = self.rewrite(headers, upgrade=kind)
        self.assertIn((b"Connection", b"Upgrade"), out)
        self.assertIn((b"Upgrade", b"websocket"), out)
        self.assertIsNone(upgrade_type([(b"Upgrade", b"websocket")]))

    def test_forwarded_for_appended_and_headers_set(self):
        """X-Forwarded-For joins earlier values; header_* replaces any
        user value; Host rewrite applies; spoofed X-Real-IP is replaced."""
        out = self.rewrite(
            [
                (b"Host", b"a.example.org:81"),
                (b"X-Forwarded-For", b"1.1.1.1"),
                (b"X-Forwarded-For", b"2.2.2.2"),
                (b"x-from-where", b"user"),
                (b"X-Real-IP", b"6.6.6.6"),
            ],
            client_ip="10.0.0.9",
            original_host=b"a.example.org:81",
            host_rewrite="inner",
            set_headers=[("X-From-Where", "frp"), ("Host", "ignored")],
        )
        self.assertEqual(
            out,
            [
                (b"Host", b"inner"),
                (b"X-Forwarded-For", b"1.1.1.1, 2.2.2.2, 10.0.0.9"),
                (b"X-Forwarded-Host", b"a.example.org:81"),
                (b"X-Forwarded-Proto", b"http"),
                (b"X-Real-IP", b"10.0.0.9"),
                (b"X-From-Where", b"frp"),
            ],
        )

    def test_response_headers(self):
        """Responses lose hop-by-hop headers except on a protocol switch;
        their framing is the one h11 read, written canonically (chunked
        wins over Content-Length)."""
        headers = [
            (b"Content-Type", b"text/plain"),
            (b"Connection", b"keep-alive"),
            (b"Keep-Alive", b"x"),
            (b"Transfer-Encoding", b"chunked"),
        ]
        self.assertEqual(
            response_headers(headers),
            [(b"Content-Type", b"text/plain"), (b"Transfer-Encoding", b"chunked")],
        )
        both = [
            (b"Content-Length", b"007"),
            (b"X", b"1"),
            (b"Transfer-Encoding", b"chunked"),
        ]
        self.assertEqual(
            response_headers(both), [(b"Transfer-Encoding", b"chunked"), (b"X", b"1")]
        )
        self.assertEqual(
            response_headers([(b"content-length", b"007")]), [(b"Content-Length", b"7")]
        )
        switch = [(b"Upgrade", b"websocket"), (b"Connection", b"Upgrade")]
        self.assertEqual(response_headers(switch, True), switch)

    def test_basic_auth(self):
        """Basic credentials decode; anything else gives no user."""
        self.assertEqual(
            basic_auth(b"Basic " + base64.b64encode(b"a:b:c")), ("a", "b:c")
        )
        self.assertEqual(basic_auth(b"basic " + base64.b64encode(b"x:")), ("x", ""))
        for bad in (
            None,
            b"",
            b"Bearer abc",
            b"Basic !!",
            b"Basic " + base64.b64encode(b"nocolon"),
        ):
            self.assertEqual(basic_auth(bad), ("", ""))


class RegistrationTests(SynchronousTestCase):
    """NewProxy validation and NewProxyResp remote_addr of http proxies."""

    def proxy(self, subdomain_host="web.example.test", port=8080, **fields):
        config = parse_server_config(
            f"[common]\nvhost_http_port = {port}\nsubdomain_host = {subdomain_host}\n"
        )
        server = Stub(config=config)
        vhost = Stub(routes=RouteTable(), port=port)
        message = messages.NewProxy(proxy_name="p", proxy_type="http", **fields)
        return HttpProxy(server, None, message, vhost)

    def test_remote_addr(self):
        """remote_addr joins domain:port for every domain, in order."""
        proxy = self.proxy(custom_domains=["A.example.org", ""], subdomain="Jup")
        self.assertEqual(proxy.start(), "a.example.org:8080,jup.web.example.test:8080")

    def test_remote_addr_port_80(self):
        """Port 80 is not written."""
        proxy = self.proxy(port=80, custom_domains=["a.example.org"])
        self.assertEqual(proxy.start(), "a.example.org")

    def test_locations_register_each(self):
        """Each domain x location is a route; close removes them all."""
        proxy = self.proxy(
            custom_domains=["a.example.org", "b.example.org"], locations=["/x", "/y"]
        )
        proxy.start()
        self.assertEqual(len(proxy.vhost.routes), 4)
        proxy.close()
        self.assertEqual(len(proxy.vhost.routes), 0)

    def assert_refused(self, text, **kw):
        with self.assertRaises(ProxyError) as caught:
            self.proxy(**kw).start()
        self.assertIn(text, str(caught.exception))

    def test_refusals(self):
        """Missing domains, a subdomain without subdomain_host, a bad
        subdomain and a custom domain under subdomain_host are refused."""
        self.assert_refused("at least one", custom_domains=[""])
        self.assert_refused(
            "subdomain is not supported", subdomain_host="", subdomain="x"
        )
        self.assert_refused("'.' and '*'", subdomain="a.b")
        self.assert_refused("'.' and '*'", subdomain="*")
        self.assert_refused(
            "should not belong to subdomain host", custom_domains=["a.web.example.test"]
        )


class ExchangeWiringTests(MemoryVhostMixin, SynchronousTestCase):
    """One vhost connection and its exchange on memory transports."""

    def test_vector_request_and_producers(self):
        """The request frps would write (plus X-Real-IP), a source-only
        StartWorkConn, producers cross-registered for the exchange only, and
        keep-alive afterwards."""
        self.connection.dataReceived(
            b"GET /lab?x=1 HTTP/1.1\r\nHost: jupyter.web.example.test\r\n"
            b"User-Agent: labrelay-vector/1\r\nAccept: */*\r\n"
            b"Connection: keep-alive\r\n\r\n"
        )
        [work] = self.works
        [start] = work.sent
        self.assertEqual(
            (
                start.proxy_name,
                start.src_addr,
                start.src_port,
                start.dst_addr,
                start.dst_port,
            ),
            ("jupyter", "127.0.0.1", 5555, "", 0),
        )
        self.assertEqual(
            work.transport.value(),
            (
                b"GET /lab?x=1 HTTP/1.1\r\nHost: jupyter.web.example.test\r\n"
                b"User-Agent: labrelay-vector/1\r\nAccept: */*\r\n"
                b"X-Forwarded-For: 127.0.0.1\r\n"
                b"X-Forwarded-Host: jupyter.web.example.test\r\n"
                b"X-Forwarded-Proto: http\r\nX-Real-IP: 127.0.0.1\r\n\r\n"
            ),
        )
        # the user's transport full: the work connection stops reading
        self.user.producer.pauseProducing()
        self.assertEqual(work.transport.producerState, "paused")
        self.user.producer.resumeProducing()
        self.assertEqual(work.transport.producerState, "producing")
        # the work connection full: the user stops reading
        work.transport.producer.pauseProducing()
        self.assertEqual(self.user.producerState, "paused")
        work.transport.producer.resumeProducing()
        self.assertEqual(self.user.producerState, "producing")
        work.sink.forward(
            work,
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nKeep-Alive: timeout=5\r\n\r\nok",
        )
        self.assertEqual(
            self.user.value(), b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        )
        self.assertIsNone(self.user.producer)
        self.assertIsNone(work.transport.producer)
        # a clean keep-alive exchange: the work connection is kept idle
        self.assertFalse(work.transport.disconnecting)
        self.assertEqual(self.proxy.idle_work_count, 1)
        self.assertFalse(self.user.disconnecting)
        self.assertEqual(
            (self.proxy.total_connections, self.proxy.active_splices), (1, 0)
        )
        # the next request reuses it: no new work connection, no second
        # StartWorkConn
        work.transport.clear()
        self.connection.dataReceived(
            b"GET /2 HTTP/1.1\r\nHost: jupyter.web.example.test\r\n\r\n"
        )
        self.assertEqual((len(self.works), len(work.sent)), (1, 1))
        self.assertTrue(work.transport.value().startswith(b"GET /2 "))
        work.sink.forward(work, b"HTTP/1.1 204 No Content\r\n\r\n")
        self.assertEqual(self.proxy.idle_work_count, 1)
        self.proxy.close()  # drops idle work connections
        self.assertEqual(self.proxy.idle_work_count, 0)
        self.assertTrue(work.transport.disconnecting)

    def test_response_head_timeout(self):
        """No response head within vhost_http_timeout: 504, work closed."""
        self.connection.dataReceived(
            b"GET / HTTP/1.1\r\nHost: jupyter.web.example.test\r\n\r\n"
        )
        [work] = self.works
        self.clock.advance(self.vhost.response_timeout - 1)
        self.assertEqual(self.user.value(), b"")
        self.clock.advance(1)
        self.assertTrue(
            self.user.value().startswith(b"HTTP/1.1 504 Gateway Timeout\r\n")
        )
        self.assertTrue(work.transport.disconnecting)

    def test_backend_closes_before_answering(self):
        """A work connection lost before a response head answers 502."""
        self.connection.dataReceived(
            b"GET / HTTP/1.1\r\nHost: jupyter.web.example.test\r\n\r\n"
        )
        [work] = self.works
        work.sink.connection_lost(work, None)
        self.assertTrue(self.user.value().startswith(b"HTTP/1.1 502 Bad Gateway\r\n"))
        self.assertFalse(self.user.disconnecting)

    def test_cut_response_closes_user(self):
        """A response cut after its head closes the user connection."""
        self.connection.dataReceived(
            b"GET / HTTP/1.1\r\nHost: jupyter.web.example.test\r\n\r\n"
        )
        [work] = self.works
        work.sink.forward(work, b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\npart")
        work.sink.end_of_input(work)
        self.assertTrue(self.user.value().endswith(b"\r\n\r\npart"))
        self.assertTrue(self.user.disconnecting)

    def test_head_timeout(self):
        """A head not complete within head_timeout is answered 408."""
        self.connection.dataReceived(b"GET / HTTP/1.1\r\nHost: jup")
        self.clock.advance(self.vhost.head_timeout)
        self.assertTrue(
            self.user.value().startswith(b"HTTP/1.1 408 Request Timeout\r\n")
        )
        self.assertTrue(self.user.disconnecting)
        self.assertEqual(self.works, [])

    def test_upgrade_traffic(self):
        """After a 101 the raw splice goes on counting the same connection:
        the proxy's traffic includes the exchange's bytes and the splice's,
        once each, while open and after."""
        request = (
            b"GET /ws HTTP/1.1\r\nHost: jupyter.web.example.test\r\n"
            b"Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
        )
        self.connection.dataReceived(request)
        [work] = self.works
        exchange = work.sink
        head = (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\n\r\n"
        )
        work.sink.forward(work, head)
        self.assertIsNot(work.sink, exchange)
        self.assertIs(self.connection.sink, work.sink)
        sent = len(work.transport.value())
        self.assertEqual(self.proxy.traffic(), (sent, len(head)))
        self.connection.dataReceived(b"ping")
        work.sink.forward(work, b"pong!")
        self.assertEqual(self.proxy.traffic(), (sent + 4, len(head) + 5))
        self.assertEqual(
            (self.proxy.total_connections, self.proxy.active_splices), (1, 1)
        )
        work.sink.connection_lost(work, None)
        self.connection.connectionLost(None)
        self.assertEqual(self.proxy.traffic(), (sent + 4, len(head) + 5))
        self.assertEqual(
            (self.proxy.total_connections, self.proxy.active_splices), (1, 0)
        )
