"""
labrelay's TLS transport over real loopback sockets: what is written leaves
at once, large writes leave in few sends, and every byte arrives in order.
"""

from __future__ import annotations

import os
import select

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from labrelay import tls_transport
from labrelay.tls import client_tls_options, server_tls_options
from labrelay.tls_transport import TLSFactory

from ..support.harness import within


@implementer(IHandshakeListener)
class Collector(Protocol):
    """Keeps what it receives; fires ``arrived`` once ``expected`` bytes came."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.expected = None
        self.arrived: Deferred[bytes] = Deferred()
        self.handshaken: Deferred[None] = Deferred()

    def handshakeCompleted(self) -> None:
        self.handshaken.callback(None)

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if self.expected is not None and len(self.received) >= self.expected:
            self.expected = None
            self.arrived.callback(bytes(self.received))


class TLSTransportTests(TestCase):
    """A client and a server TLSTransport on 127.0.0.1."""

    async def connect(self):
        server_app, client_app = Collector(), Collector()
        server_factory = TLSFactory(
            server_tls_options(), False, Factory.forProtocol(lambda: server_app)
        )
        port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            server_factory
        )
        self.addCleanup(port.stopListening)
        client_factory = TLSFactory(
            client_tls_options("localhost"),
            True,
            Factory.forProtocol(lambda: client_app),
        )
        client_tls = await TCP4ClientEndpoint(
            reactor, "127.0.0.1", port.getHost().port
        ).connect(client_factory)
        self.addCleanup(client_tls.transport.loseConnection)
        await within(client_app.handshaken)
        return server_app, client_app, client_tls

    async def test_small_write_leaves_at_once(self) -> None:
        """
        A small write is encrypted and handed to the socket before the call
        returns: with the reactor held (this test does not yield to it), the
        server's socket becomes readable, and the peer receives the bytes.
        """
        server_app, client_app, client_tls = await self.connect()
        server_socket = server_app.transport.transport.socket
        readable, _, _ = select.select([server_socket], [], [], 0)
        self.assertEqual(readable, [])
        client_app.transport.write(b"ping")
        readable, _, _ = select.select([server_socket], [], [], 5)
        self.assertEqual(readable, [server_socket])
        server_app.expected = 4
        self.assertEqual(await within(server_app.arrived), b"ping")

    async def test_large_writes_leave_in_few_sends(self) -> None:
        """
        A 1 MiB write becomes 64 TLS records but reaches the socket layer in
        one hand-over, not one per record; 4 MiB in writes of varied sizes
        arrive complete and in order.
        """
        server_app, client_app, client_tls = await self.connect()
        sends = []
        real = tls_transport.write_now

        def counting(transport, data):
            sends.append(len(data))
            real(transport, data)

        self.patch(tls_transport, "write_now", counting)
        payload = os.urandom(4 << 20)
        client_app.transport.write(payload[: 1 << 20])
        self.assertEqual(len(sends), 1)
        self.assertGreater(sends[0], 1 << 20)  # records carry their overhead
        offset = 1 << 20
        for size in (1, 100, 16383, 16384, 16385, 65536, 300_000):
            client_app.transport.write(payload[offset : offset + size])
            offset += size
        client_app.transport.write(payload[offset:])
        self.assertEqual(len(sends), 9)
        server_app.expected = len(payload)
        self.assertEqual(await within(server_app.arrived, 30), payload)
