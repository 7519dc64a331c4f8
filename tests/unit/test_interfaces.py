# -*- test-case-name: tests.unit.test_interfaces -*-
"""
The classes that implement labrelay's interfaces
(:mod:`labrelay.interfaces`) provide them in full: ``verifyObject`` on
real instances, built as the server builds them (on memory transports).
"""

from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from labrelay.config import parse_server_config
from labrelay.interfaces import (
    IAdmission,
    IAdmissionHolder,
    ICountedSink,
    IProxy,
    ISink,
    IWaitsForWork,
    IWorkConnPool,
)
from labrelay.protocol import messages
from labrelay.relay import RelayedProtocol, Splice
from labrelay.server.bind_port import ServerSession
from labrelay.server.connection import ServerConnection
from labrelay.server.guard import SourceGuard
from labrelay.server.tcp_proxy import TcpProxy, UserConnection
from labrelay.server.vhost import HttpExchange, IdleWork, Vhost
from labrelay.server.vhost.proxy import _WorkRequest
from labrelay.server.workpool import WorkConnPool
from labrelay.tracking import ConnectionSet

CONFIG = parse_server_config(
    "[common]\nvhost_http_port = 80\nsubdomain_host = web.example.test\ntoken = t\n"
)


class _Stub:
    def __init__(self, **kw):
        self.__dict__.update(kw)


class _Work:
    """A pooled work connection on a StringTransport."""

    alive = True
    sink = None

    def __init__(self):
        self.transport = StringTransport()

    def send(self, message):
        pass

    def take_early_data(self):
        return b""


def _control(pool_get):
    return _Stub(
        login=_Stub(pool_count=1),
        closed=False,
        pool=_Stub(get=pool_get),
        proxies={},
        token="t",
        run_id="r",
    )


class SinkTests(SynchronousTestCase):
    """The three kinds of sink a relayed connection hands its input to."""

    def setUp(self):
        self.clock = Clock()
        server = _Stub(config=CONFIG, clock=self.clock, connections=ConnectionSet())
        self.vhost = Vhost(server)
        self.works = []

        def get():
            self.works.append(_Work())
            return defer.succeed(self.works[-1])

        self.proxy = self.vhost.create_proxy(
            _control(get),
            messages.NewProxy(proxy_name="web", proxy_type="http", subdomain="www"),
        )
        self.proxy.start()
        self.front = self.vhost.factory.buildProtocol(None)
        self.front.makeConnection(
            StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 5555))
        )

    def tearDown(self):
        self.proxy.close()
        self.front.connectionLost(None)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_splice(self):
        """A raw Splice counts what it carries."""
        a, b = RelayedProtocol(), RelayedProtocol()
        a.makeConnection(StringTransport())
        b.makeConnection(StringTransport())
        splice = Splice(a, b)
        self.assertTrue(verifyObject(ICountedSink, splice))
        self.assertTrue(verifyObject(ISink, splice))

    def test_exchange_then_idle_work(self):
        """An HTTP exchange is its work connection's counted sink; once it
        ends cleanly the connection's sink is the IdleWork keeping it."""
        self.front.dataReceived(b"GET / HTTP/1.1\r\nHost: www.web.example.test\r\n\r\n")
        [work] = self.works
        self.assertIsInstance(work.sink, HttpExchange)
        self.assertTrue(verifyObject(ICountedSink, work.sink))
        work.sink.forward(work, b"HTTP/1.1 204 No Content\r\n\r\n")
        self.assertIsInstance(work.sink, IdleWork)
        self.assertTrue(verifyObject(ISink, work.sink))


class ProxyTests(SynchronousTestCase):
    """Both proxy types, and the parties that wait for work connections."""

    def setUp(self):
        self.clock = Clock()
        self.server = _Stub(
            config=CONFIG, clock=self.clock, connections=ConnectionSet()
        )
        self.control = _control(lambda: defer.Deferred())

    def test_tcp(self):
        """A tcp proxy and a user connection of it."""
        proxy = TcpProxy(
            self.server,
            self.control,
            messages.NewProxy(proxy_name="ssh", proxy_type="tcp", remote_port=6000),
        )
        self.assertTrue(verifyObject(IProxy, proxy))
        user = UserConnection(proxy)
        user.makeConnection(StringTransport())  # now waits for work
        self.assertTrue(verifyObject(IWaitsForWork, user))
        user.connectionLost(None)

    def test_http(self):
        """An http proxy and one request's wait for a work connection."""
        vhost = Vhost(self.server)
        proxy = vhost.create_proxy(
            self.control,
            messages.NewProxy(proxy_name="web", proxy_type="http", subdomain="www"),
        )
        self.assertTrue(verifyObject(IProxy, proxy))
        request = _WorkRequest("127.0.0.1:5555")
        self.assertTrue(verifyObject(IWaitsForWork, request))

    def test_pool(self):
        """A client's work connection pool."""
        pool = WorkConnPool(self.clock, lambda: None, capacity=1, timeout=5)
        self.assertTrue(verifyObject(IWorkConnPool, pool))


class AdmissionTests(SynchronousTestCase):
    """An admission and the two protocols that may hold one."""

    def test_admission(self):
        """What SourceGuard.admit gives."""
        clock = Clock()
        admission = SourceGuard(clock, timeout=10).admit("192.0.2.1")
        self.assertTrue(verifyObject(IAdmission, admission))
        admission.release()
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_holders(self):
        """A plain frp connection and a yamux session."""
        server = _Stub(config=CONFIG, clock=Clock())
        self.assertTrue(verifyObject(IAdmissionHolder, ServerConnection(server)))
        self.assertTrue(
            verifyObject(
                IAdmissionHolder,
                ServerSession(server, is_client=False, clock=server.clock),
            )
        )
