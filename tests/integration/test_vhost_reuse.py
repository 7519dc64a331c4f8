# -*- test-case-name: tests.integration.test_vhost_reuse -*-
"""
Work connections of ``type = http`` proxies kept for the next request
(keep-alive toward the backend), end to end on real sockets, with tcp_mux
on and off.
"""

import os

import h11
from twisted.internet import defer, reactor
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import TestCase

from labrelay.server.vhost import IDLE_WORK_KEPT, MAX_IDLE_WORK, SURPLUS_IDLE_TIMEOUT

from ..support.harness import async_test, listen, within
from ..support.vhost import (
    SUBDOMAIN_HOST,
    VhostRelay,
    basic,
    http_proxy,
    http_user,
    start_client,
)

HOST = f"web.{SUBDOMAIN_HOST}"


class Backend(Factory):
    """
    An HTTP/1.1 backend (h11) that counts its connections.  Each response
    echoes the request body after ``<target>|``, and says in ``X-Conn``
    which accepted connection carried it and in ``X-Auth`` the request's
    Authorization.  *close*: answer ``Connection: close`` and close;
    *idle_close*: close a connection that stays idle that many seconds;
    *delay*: answer after that many seconds.
    """

    def __init__(self, close=False, idle_close=None, delay=0):
        self.close = close
        self.idle_close = idle_close
        self.delay = delay
        self.accepted = 0
        self.open = 0
        self.gone = []

    def buildProtocol(self, addr):
        self.accepted += 1
        return BackendConnection(self, self.accepted)

    async def closed_count(self, count, seconds=5):
        """Wait until *count* connections have closed."""
        for _ in range(int(seconds / 0.02)):
            if len(self.gone) >= count:
                return
            await sleep(0.02)
        raise AssertionError(
            f"{len(self.gone)} backend connections closed, expected {count}"
        )


class BackendConnection(Protocol):
    def __init__(self, factory, number):
        self.factory = factory
        self.number = number
        self.http = h11.Connection(h11.SERVER)
        self.request = None
        self.body = []
        self.idle_timer = None

    def connectionMade(self):
        self.factory.open += 1

    def connectionLost(self, reason):
        self.factory.open -= 1
        self.factory.gone.append(self.number)
        if self.idle_timer is not None and self.idle_timer.active():
            self.idle_timer.cancel()

    def dataReceived(self, data):
        if self.idle_timer is not None and self.idle_timer.active():
            self.idle_timer.cancel()
        self.http.receive_data(data)
        self._pump()

    def _pump(self):
        while True:
            event = self.http.next_event()
            if event in (h11.NEED_DATA, h11.PAUSED):
                return
            if isinstance(event, h11.Request):
                self.request = event
                self.body = []
            elif isinstance(event, h11.Data):
                self.body.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                if self.factory.delay:
                    reactor.callLater(self.factory.delay, self._answer)
                    return
                self._answer()
                if self.http.our_state is not h11.DONE:
                    return
            elif isinstance(event, h11.ConnectionClosed):
                return

    def _answer(self):
        if not self.transport.connected:
            return
        request = self.request
        body = request.target + b"|" + b"".join(self.body)
        auth = {k.lower(): v for k, v in request.headers.raw_items()}.get(
            b"authorization", b"-"
        )
        headers = [
            (b"Content-Length", b"%d" % len(body)),
            (b"X-Conn", b"%d" % self.number),
            (b"X-Auth", auth),
        ]
        if self.factory.close:
            headers.append((b"Connection", b"close"))
        out = self.http.send(h11.Response(status_code=200, headers=headers))
        out += self.http.send(h11.Data(data=body))
        out += self.http.send(h11.EndOfMessage())
        self.transport.write(out)
        if self.http.our_state is h11.MUST_CLOSE:
            self.transport.loseConnection()
            return
        if self.http.their_state is h11.DONE:
            self.http.start_next_cycle()
            if self.factory.idle_close is not None:
                self.idle_timer = reactor.callLater(
                    self.factory.idle_close, self.transport.loseConnection
                )
            if self.factory.delay:
                self._pump()


def sleep(seconds):
    d = defer.Deferred()
    reactor.callLater(seconds, d.callback, None)
    return d


async def until(condition, seconds=5, what="condition"):
    for _ in range(int(seconds / 0.02)):
        if condition():
            return
        await sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


class ReuseMixin:
    mux = True
    timeout = 60

    async def setup(self, backend=None, **options):
        self.relay = await VhostRelay(self, mux=self.mux).start()
        self.backend = backend or Backend()
        port = listen(self, self.backend)
        self.frpc = await start_client(
            self,
            self.relay,
            http_proxy("web", port, subdomain="web", **options),
            ["web"],
            mux=self.mux,
        )
        self.proxy = self.relay.server.registry.proxies["web"]
        return self.backend

    @async_test
    async def test_sequential_requests_one_backend_connection(self):
        """Sequential requests of one user, then of another user with other
        credentials, all travel on one work and one backend connection;
        each request keeps its own headers."""
        backend = await self.setup()
        user = await http_user(self, self.relay.http_port)
        for i in range(3):
            reply = await user.request(HOST, f"/a{i}", headers=[basic("ann", "x")])
            self.assertEqual((reply.status, reply.body), (200, f"/a{i}|".encode()))
            self.assertEqual(reply.headers["x-conn"], "1")
            self.assertEqual(reply.headers["x-auth"], basic("ann", "x")[1])
        self.assertEqual(self.proxy.idle_work_count, 1)
        other = await http_user(self, self.relay.http_port)
        reply = await other.request(HOST, "/b", headers=[basic("bob", "y")])
        self.assertEqual(
            (reply.body, reply.headers["x-conn"], reply.headers["x-auth"]),
            (b"/b|", "1", basic("bob", "y")[1]),
        )
        reply = await user.request(HOST, "/c")
        self.assertEqual(
            (reply.body, reply.headers["x-conn"], reply.headers["x-auth"]),
            (b"/c|", "1", "-"),
        )
        self.assertEqual(backend.accepted, 1)
        self.assertEqual(self.proxy.total_connections, 5)
        self.assertEqual(self.proxy.active_splices, 0)

    @async_test
    async def test_connection_close_gets_new_work_connection(self):
        """A backend answering ``Connection: close``: a new work (and
        backend) connection for each request, none kept."""
        backend = await self.setup(Backend(close=True))
        user = await http_user(self, self.relay.http_port)
        for i in range(3):
            reply = await user.request(HOST, f"/{i}")
            self.assertEqual((reply.status, reply.headers["x-conn"]), (200, str(i + 1)))
            self.assertEqual(self.proxy.idle_work_count, 0)
        self.assertEqual(backend.accepted, 3)

    @async_test
    async def test_idle_expiry(self):
        """An idle work connection is closed after idle_work_timeout; the
        next request gets a new one."""
        backend = await self.setup()
        self.relay.vhost.idle_work_timeout = 0.3
        user = await http_user(self, self.relay.http_port)
        reply = await user.request(HOST, "/1")
        self.assertEqual(reply.headers["x-conn"], "1")
        self.assertEqual(self.proxy.idle_work_count, 1)
        await until(lambda: self.proxy.idle_work_count == 0, what="expiry")
        await backend.closed_count(1)
        reply = await user.request(HOST, "/2")
        self.assertEqual((reply.status, reply.headers["x-conn"]), (200, "2"))

    @async_test
    async def test_backend_closes_idle_connection(self):
        """The backend closing a kept connection drops it from the idle
        list; the next request is served on a new one."""
        backend = await self.setup(Backend(idle_close=0.1))
        user = await http_user(self, self.relay.http_port)
        reply = await user.request(HOST, "/1")
        self.assertEqual(reply.headers["x-conn"], "1")
        await backend.closed_count(1)
        await until(lambda: self.proxy.idle_work_count == 0, what="idle drop")
        reply = await user.request(HOST, "/2")
        self.assertEqual((reply.status, reply.headers["x-conn"]), (200, "2"))

    @async_test
    async def test_encrypted_compressed_reuse_byte_exact(self):
        """use_encryption + use_compression: the codec carries on across
        requests on one work connection; bodies arrive byte-exact."""
        backend = await self.setup(use_encryption="true", use_compression="true")
        users = [await http_user(self, self.relay.http_port) for _ in range(2)]
        for i, size in enumerate([0, 1, 5000, 200000, 70000, 3, 1 << 20]):
            body = os.urandom(size // 2) + b"z" * (size - size // 2)
            reply = await users[i % 2].request(HOST, f"/p{i}", method="POST", body=body)
            self.assertEqual(reply.status, 200)
            self.assertEqual(reply.body, f"/p{i}|".encode() + body)
            self.assertEqual(reply.headers["x-conn"], "1")
        self.assertEqual(backend.accepted, 1)

    @async_test
    async def test_at_most_five_kept(self):
        """Concurrent requests each take a work connection; no more than
        the vhost's max_idle_work (here five) are kept, the others close."""
        backend = await self.setup(Backend(delay=0.3))
        self.relay.vhost.max_idle_work = 5
        users = [await http_user(self, self.relay.http_port) for _ in range(7)]
        replies = await defer.gatherResults(
            [u.request(HOST, f"/{i}") for i, u in enumerate(users)]
        )
        self.assertEqual([r.status for r in replies], [200] * 7)
        self.assertEqual(backend.accepted, 7)
        self.assertEqual(self.proxy.idle_work_count, 5)
        await backend.closed_count(2)
        self.assertEqual(backend.open, 5)
        reply = await users[0].request(HOST, "/again")
        self.assertEqual(reply.status, 200)
        self.assertEqual(backend.accepted, 7)

    @async_test
    async def test_busy_proxy_keeps_its_concurrency(self):
        """By default a proxy keeps as many idle work connections as it had
        concurrent requests (up to MAX_IDLE_WORK): eight users in parallel,
        twice, use eight backend connections in all."""
        self.assertEqual(MAX_IDLE_WORK, 64)
        backend = await self.setup(Backend(delay=0.2))
        users = [await http_user(self, self.relay.http_port) for _ in range(8)]
        for round_ in range(2):
            replies = await defer.gatherResults(
                [u.request(HOST, f"/{round_}/{i}") for i, u in enumerate(users)]
            )
            self.assertEqual([r.status for r in replies], [200] * 8)
            self.assertEqual(self.proxy.idle_work_count, 8)
        self.assertEqual(backend.accepted, 8)

    @async_test
    async def test_surplus_idle_closes_early(self):
        """Beyond idle_work_kept, idle work connections close after
        surplus_idle_timeout; the kept ones stay."""
        self.assertEqual((IDLE_WORK_KEPT, SURPLUS_IDLE_TIMEOUT), (5, 1))
        backend = await self.setup(Backend(delay=0.2))
        self.relay.vhost.idle_work_kept = 2
        self.relay.vhost.surplus_idle_timeout = 0.3
        users = [await http_user(self, self.relay.http_port) for _ in range(4)]
        replies = await defer.gatherResults(
            [u.request(HOST, f"/{i}") for i, u in enumerate(users)]
        )
        self.assertEqual([r.status for r in replies], [200] * 4)
        self.assertEqual(self.proxy.idle_work_count, 4)
        await until(lambda: self.proxy.idle_work_count == 2, what="surplus expiry")
        await backend.closed_count(2)
        self.assertEqual(backend.open, 2)

    @async_test
    async def test_client_gone_drops_idle(self):
        """The client going away closes the proxy and its idle work
        connections (and so the backend connections)."""
        backend = await self.setup()
        user = await http_user(self, self.relay.http_port)
        reply = await user.request(HOST, "/1")
        self.assertEqual(reply.status, 200)
        self.assertEqual(self.proxy.idle_work_count, 1)
        await within(self.frpc.stop())
        await until(lambda: self.proxy.closed, what="proxy closed")
        self.assertEqual(self.proxy.idle_work_count, 0)
        await backend.closed_count(1)

    @async_test
    async def test_proxy_close_drops_idle(self):
        """Closing the proxy on the server drops its idle connections."""
        backend = await self.setup()
        user = await http_user(self, self.relay.http_port)
        await user.request(HOST, "/1")
        self.assertEqual(self.proxy.idle_work_count, 1)
        self.proxy.close()
        self.assertEqual(self.proxy.idle_work_count, 0)
        await backend.closed_count(1)


class MuxReuseTests(ReuseMixin, TestCase):
    mux = True


class NoMuxReuseTests(ReuseMixin, TestCase):
    mux = False
