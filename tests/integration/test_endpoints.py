# -*- test-case-name: tests.integration.test_endpoints -*-
"""
labrelay.endpoints over real loopback sockets: the client dial (plain, TLS,
TLS with the 0x17 head byte), including what half-close does over TLS.
"""

from __future__ import annotations

import socket

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from labrelay.endpoints import client_endpoint
from labrelay.sniff import SniffingFactory
from labrelay.tls import client_tls_options, server_tls_options


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
        sniffing = SniffingFactory(
            frp, server_tls_options(), tls_only=False, clock=reactor
        )
        return frp, self.listen(sniffing)

    def dial(self, port: int, peer: Peer, host="127.0.0.1", **kwargs) -> Deferred:
        options = dict(tls_enable=True, send_tls_first_byte=True)
        options.update(kwargs)
        if options["tls_enable"]:
            options.setdefault("tls_options", client_tls_options(host))
        endpoint = client_endpoint(
            reactor, server_addr=host, server_port=port, **options
        )
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
        port = self.listen(
            SniffingFactory(frp, None, tls_only=False, clock=reactor), "::1"
        )
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
