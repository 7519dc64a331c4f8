"""
Tests for labrelay.endpoints: listen descriptions (in memory) and the client
dial over real loopback sockets (plain, TLS, TLS with the 0x17 head byte),
including what half-close does over TLS.
"""

from __future__ import annotations

import socket

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import HostnameEndpoint, serverFromString
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IHalfCloseableProtocol, IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactor
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer

from labrelay.endpoints import client_endpoint, server_endpoint_description
from labrelay.sniff import SniffingFactory
from labrelay.tls import client_tls_options, server_tls_options


class DescriptionTests(SynchronousTestCase):
    """server_endpoint_description builds strports strings from frp addresses."""

    def listen(self, description: str):
        memory = MemoryReactor()
        serverFromString(memory, description).listen(Factory())
        [(port, _, _, interface)] = memory.tcpServers
        return port, interface

    def test_ipv4(self) -> None:
        """An IPv4 address becomes the interface."""
        description = server_endpoint_description("0.0.0.0", 7000)
        self.assertEqual(description, "tcp:7000:interface=0.0.0.0")
        self.assertEqual(self.listen(description), (7000, "0.0.0.0"))

    def test_ipv6(self) -> None:
        """An IPv6 address (no brackets, as in frp's config) has its colons escaped."""
        description = server_endpoint_description("::", 7000)
        self.assertEqual(description, "tcp:7000:interface=\\:\\:")
        self.assertEqual(self.listen(description), (7000, "::"))

    def test_bracketed_ipv6(self) -> None:
        """Brackets around an IPv6 address are tolerated."""
        self.assertEqual(self.listen(server_endpoint_description("[::1]", 80)), (80, "::1"))

    def test_all_interfaces(self) -> None:
        """An empty address listens on all interfaces."""
        self.assertEqual(server_endpoint_description("", 7000), "tcp:7000")


class ClientEndpointShapeTests(SynchronousTestCase):
    """client_endpoint picks the right endpoint for the configuration."""

    def test_plain_is_hostname_endpoint(self) -> None:
        """Without TLS the dial is a plain HostnameEndpoint."""
        endpoint = client_endpoint(
            MemoryReactor(), server_addr="relay.example", server_port=7000,
            tls_enable=False, send_tls_first_byte=True,
        )
        self.assertIsInstance(endpoint, HostnameEndpoint)

    def test_tls_needs_options(self) -> None:
        """tls_enable without TLS options is a programming error."""
        self.assertRaises(
            ValueError, client_endpoint, MemoryReactor(), server_addr="relay.example",
            server_port=7000, tls_enable=True, send_tls_first_byte=False,
        )

    def test_tls_endpoints(self) -> None:
        """With TLS both variants are client endpoints."""
        for first_byte in (False, True):
            endpoint = client_endpoint(
                MemoryReactor(), server_addr="relay.example", server_port=7000,
                tls_enable=True, tls_options=client_tls_options("relay.example"),
                send_tls_first_byte=first_byte,
            )
            self.assertTrue(IStreamClientEndpoint.providedBy(endpoint))


class Peer(Protocol):
    """Records bytes; fires `lost` on close and `got` once `expect` bytes have arrived."""

    def __init__(self, expect: int = 0, echo: bool = False) -> None:
        self.expect = expect
        self.echo = echo
        self.data = b""
        self.reason = None
        self.got: Deferred = Deferred()
        self.lost: Deferred = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        if self.echo:
            self.transport.write(data)
        if self.expect and len(self.data) >= self.expect and not self.got.called:
            self.got.callback(self.data)

    def connectionLost(self, reason) -> None:
        self.reason = reason
        self.lost.callback(None)


@implementer(IHalfCloseableProtocol)
class HalfClosePeer(Peer):
    """A Peer that answers the peer's half-close with b"bye" and then closes."""

    read_lost = False

    def readConnectionLost(self) -> None:
        self.read_lost = True
        self.transport.write(b"bye")
        self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        pass


class ServerSide(Factory):
    """Builds server-side peers and remembers them."""

    def __init__(self, peer_class=Peer, **kwargs) -> None:
        self.peer_class = peer_class
        self.kwargs = kwargs
        self.peers: list[Peer] = []
        self.first: Deferred = Deferred()

    def buildProtocol(self, addr):
        peer = self.peer_class(**self.kwargs)
        self.peers.append(peer)
        if not self.first.called:
            self.first.callback(peer)
        return peer


class LoopbackTests(TestCase):
    """Real loopback connections through client_endpoint to a SniffingFactory."""

    timeout = 15

    def listen(self, factory, interface="127.0.0.1") -> int:
        port = reactor.listenTCP(0, factory, interface=interface)
        self.addCleanup(port.stopListening)
        return port.getHost().port

    def sniffing_server(self, peer_class=Peer, **kwargs) -> tuple[ServerSide, int]:
        frp = ServerSide(peer_class, echo=True, **kwargs)
        sniffing = SniffingFactory(frp, server_tls_options(), tls_only=False, clock=reactor)
        return frp, self.listen(sniffing)

    def dial(self, port: int, peer: Peer, host="127.0.0.1", **kwargs) -> Deferred:
        options = dict(tls_enable=True, send_tls_first_byte=True)
        options.update(kwargs)
        if options["tls_enable"]:
            options.setdefault("tls_options", client_tls_options(host))
        endpoint = client_endpoint(reactor, server_addr=host, server_port=port, **options)
        return endpoint.connect(Factory.forProtocol(lambda: peer))

    @inlineCallbacks
    def echo(self, **kwargs):
        frp, port = self.sniffing_server()
        client = Peer(expect=4)
        connected = yield self.dial(port, client, **kwargs)
        self.assertIs(connected, client)
        client.transport.write(b"ping")
        self.assertEqual((yield client.got), b"ping")
        server = yield frp.first
        client.transport.loseConnection()
        yield client.lost
        yield server.lost
        self.assertEqual(server.data, b"ping")
        return server

    def test_tls_with_head_byte(self):
        """TLS preceded by 0x17 reaches the frp protocol and echoes."""
        return self.echo(tls_enable=True, send_tls_first_byte=True)

    def test_tls_without_head_byte(self):
        """TLS without the head byte echoes too."""
        return self.echo(tls_enable=True, send_tls_first_byte=False)

    @inlineCallbacks
    def test_plain(self):
        """A plain connection echoes, and the server sees a clean close."""
        server = yield self.echo(tls_enable=False)
        self.assertTrue(server.reason.check(ConnectionDone))

    @inlineCallbacks
    def test_local_ip(self):
        """local_ip binds the client socket: the server sees that address."""
        server = yield self.echo(tls_enable=False, local_ip="127.0.0.2")
        self.assertEqual(server.transport.getPeer().host, "127.0.0.2")

    @inlineCallbacks
    def test_ipv6_server_addr(self):
        """An IPv6 server_addr without brackets is dialled."""
        try:
            socket.socket(socket.AF_INET6).close()
        except OSError:
            raise self.skipTest("no IPv6")
        frp = ServerSide(echo=True)
        port = self.listen(SniffingFactory(frp, None, tls_only=False, clock=reactor), "::1")
        client = Peer(expect=2)
        yield self.dial(port, client, host="::1", tls_enable=False)
        client.transport.write(b"v6")
        self.assertEqual((yield client.got), b"v6")
        client.transport.loseConnection()
        yield client.lost
        yield (yield frp.first).lost

    @inlineCallbacks
    def test_raw_bytes_on_the_wire(self):
        """A raw listener sees exactly 0x17, then the ClientHello's 0x16."""
        raw = ServerSide(expect=2)
        port = self.listen(raw)
        client = Peer()
        yield self.dial(port, client, tls_enable=True, send_tls_first_byte=True)
        server = yield raw.first
        data = yield server.got
        self.assertEqual(data[:2], b"\x17\x16")
        server.transport.loseConnection()
        yield server.lost
        yield client.lost

    @inlineCallbacks
    def test_plain_half_close(self):
        """On a plain connection the server gets readConnectionLost and can still answer."""
        frp, port = self.sniffing_server(HalfClosePeer)
        client = Peer(expect=7)
        yield self.dial(port, client, tls_enable=False)
        client.transport.write(b"ping")
        client.transport.loseWriteConnection()
        self.assertEqual((yield client.got), b"pingbye")
        server = yield frp.first
        yield server.lost
        yield client.lost
        self.assertTrue(server.read_lost)

    @inlineCallbacks
    def test_tls_half_close_is_a_full_close(self):
        """
        Over TLS, loseWriteConnection sends a bare FIN (no close_notify): the
        server never gets readConnectionLost, only connectionLost(ConnectionLost).
        """
        frp, port = self.sniffing_server(HalfClosePeer)
        client = Peer(expect=4)
        yield self.dial(port, client, tls_enable=True, send_tls_first_byte=True)
        client.transport.write(b"ping")
        self.assertEqual((yield client.got), b"ping")
        client.transport.loseWriteConnection()
        server = yield frp.first
        yield server.lost
        yield client.lost
        self.assertFalse(server.read_lost)
        self.assertTrue(server.reason.check(ConnectionLost))
        self.assertTrue(client.reason.check(ConnectionLost))
        self.assertEqual(client.data, b"ping")
