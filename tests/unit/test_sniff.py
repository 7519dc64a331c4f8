"""
Tests for labrelay.sniff: first-byte TLS/plain detection on the bind port,
with StringTransport, iosim and a Clock.
"""

from __future__ import annotations

from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs, formatEvent
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from labrelay.endpoints import _HeadByteTLSFactory
from labrelay.sniff import SniffingFactory
from labrelay.tls import client_tls_options, server_tls_options

LOGIN = b"o\x00\x00\x00\x00\x00\x00\x00\x02{}"


class Recorder(Protocol):
    """An frp-side protocol that records its events."""

    def __init__(self) -> None:
        self.data = b""
        self.lost = None

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason) -> None:
        self.lost = reason


@implementer(IHalfCloseableProtocol)
class HalfCloseRecorder(Recorder):
    """A Recorder that accepts half-close."""

    read_lost = False
    write_lost = False

    def readConnectionLost(self) -> None:
        self.read_lost = True

    def writeConnectionLost(self) -> None:
        self.write_lost = True


class RecordingFactory(Factory):
    """Builds protocols of one class and remembers them."""

    def __init__(self, protocol_class=Recorder) -> None:
        self.protocol_class = protocol_class
        self.built: list[Recorder] = []

    def buildProtocol(self, addr):
        proto = self.protocol_class()
        proto.factory = self
        self.built.append(proto)
        return proto


class SniffTestCase(SynchronousTestCase):
    """Shared set-up: a clock, a recording plain factory, a sniffing factory."""

    protocol_class = Recorder
    tls_only = False

    def setUp(self) -> None:
        self.clock = Clock()
        self.plain = RecordingFactory(self.protocol_class)
        self.factory = SniffingFactory(
            self.plain, server_tls_options(), tls_only=self.tls_only, clock=self.clock
        )
        self.addCleanup(lambda: self.assertEqual(self.clock.getDelayedCalls(), []))

    def accept(self):
        """A sniffing protocol connected to a StringTransport."""
        proto = self.factory.buildProtocol(None)
        transport = StringTransport()
        proto.makeConnection(transport)
        return proto, transport

    def close(self, proto, transport) -> None:
        transport.loseConnection()
        proto.connectionLost(Failure(ConnectionDone()))


class PlainTests(SniffTestCase):
    """Plain frp bytes reach the plain protocol intact."""

    def test_all_bytes_in_one_read(self) -> None:
        """A Login arriving in one read is delivered whole, first byte included."""
        proto, transport = self.accept()
        proto.dataReceived(LOGIN)
        [inner] = self.plain.built
        self.assertEqual(inner.data, LOGIN)
        self.assertIs(inner.transport, transport)
        self.close(proto, transport)
        self.assertTrue(inner.lost.check(ConnectionDone))

    def test_split_arrival(self) -> None:
        """Bytes arriving one at a time are all delivered, in order."""
        proto, transport = self.accept()
        for i in range(len(LOGIN)):
            proto.dataReceived(LOGIN[i : i + 1])
        self.assertEqual(self.plain.built[0].data, LOGIN)
        self.assertEqual(len(self.plain.built), 1)
        self.close(proto, transport)

    def test_single_byte(self) -> None:
        """A lone first byte selects plain mode and is delivered."""
        proto, transport = self.accept()
        proto.dataReceived(b"w")
        self.assertEqual(self.plain.built[0].data, b"w")
        self.close(proto, transport)

    def test_empty_read_ignored(self) -> None:
        """An empty read does not choose a mode."""
        proto, transport = self.accept()
        proto.dataReceived(b"")
        self.assertEqual(self.plain.built, [])
        proto.dataReceived(LOGIN)
        self.assertEqual(self.plain.built[0].data, LOGIN)
        self.close(proto, transport)

    def test_producer_goes_to_real_transport(self) -> None:
        """The inner protocol registers its producer on the socket transport itself."""
        proto, transport = self.accept()
        proto.dataReceived(LOGIN)
        inner = self.plain.built[0]
        inner.transport.registerProducer(inner, True)
        self.assertIs(transport.producer, inner)
        transport.unregisterProducer()
        self.close(proto, transport)

    def test_factory_refuses(self) -> None:
        """A plain factory returning None closes the connection."""
        self.plain.buildProtocol = lambda addr: None
        proto, transport = self.accept()
        proto.dataReceived(LOGIN)
        self.assertTrue(transport.disconnecting)
        self.close(proto, transport)


class HalfCloseTests(SniffTestCase):
    """Half-close reaches a half-closeable plain protocol."""

    protocol_class = HalfCloseRecorder

    def test_read_and_write_connection_lost(self) -> None:
        """readConnectionLost and writeConnectionLost are forwarded."""
        proto, transport = self.accept()
        self.assertFalse(IHalfCloseableProtocol.providedBy(proto))
        proto.dataReceived(LOGIN)
        self.assertTrue(IHalfCloseableProtocol.providedBy(proto))
        IHalfCloseableProtocol(proto).readConnectionLost()
        inner = self.plain.built[0]
        self.assertTrue(inner.read_lost)
        self.assertFalse(inner.write_lost)
        IHalfCloseableProtocol(proto).writeConnectionLost()
        self.assertTrue(inner.write_lost)
        self.close(proto, transport)

    def test_not_declared_for_tls(self) -> None:
        """Over TLS the sniffer does not claim half-close support."""
        proto, transport = self.accept()
        proto.dataReceived(b"\x17")
        self.assertFalse(IHalfCloseableProtocol.providedBy(proto))
        self.close(proto, transport)


class NotHalfCloseableTests(SniffTestCase):
    """A plain protocol without half-close support is not advertised as having it."""

    def test_not_declared(self) -> None:
        """The reactor then delivers connectionLost on the peer's FIN."""
        proto, transport = self.accept()
        proto.dataReceived(LOGIN)
        self.assertFalse(IHalfCloseableProtocol.providedBy(proto))
        self.close(proto, transport)


class TimeoutTests(SniffTestCase):
    """The first byte must arrive within first_byte_timeout."""

    def test_timeout_closes(self) -> None:
        """Silence for 10 s closes the connection with a log line."""
        proto, transport = self.accept()
        self.clock.advance(9.9)
        self.assertFalse(transport.disconnecting)
        with capturedLogs() as events:
            self.clock.advance(0.2)
        self.assertTrue(transport.disconnecting)
        [event] = events
        self.assertIn("192.168.1.1:54321", formatEvent(event))
        proto.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.plain.built, [])

    def test_data_cancels_timeout(self) -> None:
        """A first byte in time cancels the timer."""
        proto, transport = self.accept()
        proto.dataReceived(LOGIN)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertFalse(transport.disconnecting)
        self.close(proto, transport)

    def test_lost_before_first_byte(self) -> None:
        """A connection dropped before its first byte cancels the timer and builds nothing."""
        proto, transport = self.accept()
        proto.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.plain.built, [])


class TLSOnlyTests(SniffTestCase):
    """tls_only refuses plain connections but accepts TLS."""

    tls_only = True

    def test_plain_refused(self) -> None:
        """A plain first byte is refused with a log line naming the peer."""
        proto, transport = self.accept()
        with capturedLogs() as events:
            proto.dataReceived(LOGIN)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.plain.built, [])
        [event] = events
        text = formatEvent(event)
        self.assertIn("192.168.1.1:54321", text)
        self.assertIn("tls_only", text)
        proto.dataReceived(b"more")
        self.assertEqual(self.plain.built, [])
        proto.connectionLost(Failure(ConnectionDone()))

    def test_tls_accepted(self) -> None:
        """A 0x16 first byte is still accepted."""
        proto, transport = self.accept()
        proto.dataReceived(b"\x16")
        self.assertFalse(transport.disconnecting)
        self.assertEqual(len(self.plain.built), 1)
        self.close(proto, transport)


class NoTLSConfiguredTests(SniffTestCase):
    """Without TLS options, TLS connections are refused."""

    def setUp(self) -> None:
        super().setUp()
        self.factory = SniffingFactory(
            self.plain, None, tls_only=False, clock=self.clock
        )

    def test_tls_refused(self) -> None:
        """A 0x17 first byte is refused."""
        proto, transport = self.accept()
        with capturedLogs():
            proto.dataReceived(b"\x17\x16\x03\x01")
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.plain.built, [])
        proto.connectionLost(Failure(ConnectionDone()))


class TLSTests(SniffTestCase):
    """TLS with and without the 0x17 head byte, end to end in memory."""

    def handshake(self, client_factory_class):
        server = self.factory.buildProtocol(None)
        client_app = Recorder()
        client_tls = client_factory_class(
            client_tls_options("localhost"),
            True,
            Factory.forProtocol(lambda: client_app),
            clock=self.clock,
        ).buildProtocol(None)
        pump = iosim.connect(
            server,
            iosim.makeFakeServer(server),
            client_tls,
            iosim.makeFakeClient(client_tls),
            clock=self.clock,
        )
        client_app.transport.write(LOGIN)
        pump.flush()
        [inner] = self.plain.built
        self.assertEqual(inner.data, LOGIN)
        inner.transport.write(b"reply")
        pump.flush()
        self.assertEqual(client_app.data, b"reply")
        client_app.transport.loseConnection()
        pump.flush()
        self.assertTrue(inner.lost.check(ConnectionDone))

    def test_head_byte(self) -> None:
        """0x17 then a ClientHello: the byte is dropped and TLS runs on the rest."""
        self.handshake(_HeadByteTLSFactory)

    def test_bare_client_hello(self) -> None:
        """A ClientHello (0x16) first: TLS including that byte."""
        self.handshake(TLSMemoryBIOFactory)

    def test_garbage_handshake(self) -> None:
        """A broken handshake is logged once with peer and reason, and closed."""
        proto, transport = self.accept()
        with capturedLogs() as events:
            proto.dataReceived(b"\x16" + b"\x00garbage" * 8)
            self.assertTrue(transport.disconnecting)
            proto.connectionLost(Failure(ConnectionDone()))
        [event] = [e for e in events if "TLS" in e["log_format"]]
        text = formatEvent(event)
        self.assertIn("192.168.1.1:54321", text)
        self.assertIn("handshake failed", text)
        self.assertTrue(event["why"])
        [inner] = self.plain.built
        self.assertIsNotNone(inner.lost)


class FactoryTests(SynchronousTestCase):
    """SniffingFactory starts and stops the plain factory with itself."""

    def test_start_stop(self) -> None:
        """doStart/doStop reach the plain factory."""
        plain = RecordingFactory()
        factory = SniffingFactory(plain, None, tls_only=False, clock=Clock())
        factory.doStart()
        self.assertEqual(plain.numPorts, 1)
        factory.doStop()
        self.assertEqual(plain.numPorts, 0)
