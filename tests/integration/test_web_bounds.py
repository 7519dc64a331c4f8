"""
The connection bounds of the two local web APIs (labrelay.web): on real
loopback sockets, connections beyond the per-source cap are closed at
accept while the API keeps answering, and a slot frees when one closes.
"""

from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource

from labrelay.web import QuietSite, TrackingFactory

from ..support.harness import async_test, within


class _Hello(Resource):
    isLeaf = True

    def render_GET(self, request):
        return b"hello"


class _Peer(Protocol):
    def __init__(self):
        self.data = b""
        self.closed = defer.Deferred()

    def dataReceived(self, data):
        self.data += data

    def connectionLost(self, reason):
        self.closed.callback(self.data)


class ConnectionCapTests(TestCase):
    @async_test
    async def test_per_source_cap(self):
        """Three connections from one address with a cap of two: the
        third is closed unanswered, the first two still get answers, and
        closing one lets a new one in."""
        tracking = TrackingFactory(
            QuietSite(_Hello()), "test API", max_connections=10, max_per_source=2
        )
        port = reactor.listenTCP(0, tracking, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)

        async def connect():
            peer = await within(
                endpoint.connect(Factory.forProtocol(_Peer)), 10, "connect"
            )
            self.addCleanup(peer.transport.abortConnection)
            return peer

        first, second, third = [await connect() for _ in range(3)]
        self.assertEqual(await within(third.closed, 10, "third closed"), b"")
        self.assertEqual(len(tracking.connections), 2)

        first.transport.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        self.assertIn(b"hello", await within(first.closed, 10, "answer"))
        fourth = await connect()
        fourth.transport.write(
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        self.assertIn(b"hello", await within(fourth.closed, 10, "answer"))
        second.transport.abortConnection()
        await within(second.closed, 10, "second closed")

    def test_idle_timeout(self):
        """The site closes idle connections after IDLE_TIMEOUT, not
        twisted.web's 12 hours."""
        from labrelay.web import IDLE_TIMEOUT

        self.assertEqual(QuietSite(_Hello()).timeOut, IDLE_TIMEOUT)
        self.assertLessEqual(IDLE_TIMEOUT, 300)
