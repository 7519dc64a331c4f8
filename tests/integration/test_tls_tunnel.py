# -*- test-case-name: tests.integration.test_tls_tunnel -*-
"""
Full tunnels over a TLS link between real clients and a real server on
127.0.0.1, with and without tcp_mux: frp's default (any server certificate
accepted), the 0x17 head byte, a verified server name, mutual TLS and
``tls_only``.  Certificates are generated when the tests run.
"""

import hashlib
import os
from types import SimpleNamespace

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, wrapClientTLS
from twisted.internet.interfaces import IHandshakeListener, ISSLTransport
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import LoopingCall
from twisted.protocols import portforward
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from labrelay.errors import LoginRefused
from labrelay.mux.session import YamuxSession
from labrelay.server.connection import ServerConnection
from labrelay.tls import client_tls_options, server_tls_options

from ..support import certs as testcerts
from ..support.harness import (
    Client,
    LogCapture,
    Relay,
    async_test,
    connect_user,
    echo_server,
    listen,
    recording_echo_server,
    tcp_proxy,
    within,
)

#: The shortened first-byte / first-message / idle-session bound.
HANDSHAKE = 0.5

SERVER_NAME = "relay.example.test"


class _HeadTap(portforward.ProxyServer):
    """Forwards one connection, noting the first two bytes it carries."""

    head = None

    def dataReceived(self, data):
        if self.head is None:
            self.head = data[:2]
            self.factory.heads.append(self.head)
        super().dataReceived(data)


def head_tap(testcase, port):
    """A TCP forwarder to 127.0.0.1:*port*; returns (its port, the list of
    the first two bytes of every connection through it)."""
    factory = portforward.ProxyFactory("127.0.0.1", port)
    factory.protocol = _HeadTap
    factory.heads = []
    factory.noisy = False
    return listen(testcase, factory), factory.heads


class TLSTunnelMixin:
    mux = True
    timeout = 30

    def make_certs(self):
        """A CA, a server certificate for 127.0.0.1 and relay.example.test
        signed by it, a client certificate signed by it, one signed by an
        unrelated CA and a self-signed server certificate, as files."""
        directory = self.mktemp()
        paths = SimpleNamespace()
        paths.ca = testcerts.write_pem(
            directory, "ca.crt", testcerts.certificate_authority().cert
        )
        paths.server_cert, paths.server_key = testcerts.server_certificate(
            dns_names=(SERVER_NAME,), ip_addresses=("127.0.0.1",)
        ).write_to(directory, "server")
        paths.client_cert, paths.client_key = testcerts.client_certificate().write_to(
            directory, "client"
        )
        paths.other_cert, paths.other_key = testcerts.client_certificate(
            ca_name=testcerts.OTHER_CA_NAME
        ).write_to(directory, "other")
        paths.self_cert, paths.self_key = testcerts.self_signed_certificate().write_to(
            directory, "self"
        )
        return paths

    async def relay(self, tls_options, extra=""):
        relay = await Relay(self, extra, mux=self.mux, tls_options=tls_options).start()
        relay.server.set_handshake_timeouts(HANDSHAKE)
        return relay

    async def tunnel(
        self, relay, extra="", tls=True, port=None, name="echo", backend=None
    ):
        """A client with one echo proxy; returns (client, remote port)."""
        backend = backend or echo_server(self)
        client = await Client(
            self,
            port or relay.port,
            tcp_proxy(name, backend),
            extra,
            mux=self.mux,
            tls=tls,
        ).start()
        await within(client.client.first_login)
        return client, await client.running(name)

    async def refused(self, relay, extra="", tls=True):
        """Start a client that must fail to log in; return its error."""
        client = Client(
            self, relay.port, tcp_proxy("never", 1), extra, mux=self.mux, tls=tls
        )
        first = client.client.first_login
        await client.start()
        with self.assertRaises(LoginRefused) as caught:
            await within(first)
        await within(client.stop())
        self.assertEqual(relay.server.registry.controls, {})
        return str(caught.exception)

    def assert_links_are_tls(self, relay):
        """Every connection from the client to the server runs over TLS."""
        if self.mux:
            transports = [s.transport for s in relay.server.sessions]
        else:
            transports = [
                c.transport
                for c in relay.server.connections
                if isinstance(c, ServerConnection)
            ]
        self.assertTrue(transports)
        for transport in transports:
            self.assertTrue(ISSLTransport.providedBy(transport), transport)

    async def echo(self, port, payload=b"ping over tls"):
        user = await connect_user(self, port)
        user.transport.write(payload)
        received = await within(user.wait_for(len(payload)), 30)
        self.assertEqual(
            hashlib.sha256(received).hexdigest(), hashlib.sha256(payload).hexdigest()
        )

    # (a) frp's default client: TLS without a CA.

    @async_test
    async def test_default_tls_echo(self):
        """A default TLS client (no CA) against a server with a self-signed
        certificate relays 1 MiB byte-exact, over TLS, with no head byte."""
        certs = self.make_certs()
        relay = await self.relay(server_tls_options(certs.self_cert, certs.self_key))
        tap_port, heads = head_tap(self, relay.port)
        _, port = await self.tunnel(relay, port=tap_port)
        await self.echo(port, os.urandom(1024 * 1024))
        self.assert_links_are_tls(relay)
        self.assertTrue(heads)
        for head in heads:
            self.assertEqual(head[:1], b"\x16")  # a bare ClientHello

    @async_test
    async def test_server_generated_certificate(self):
        """A server with no certificate configured makes its own, which a
        default client accepts."""
        relay = await self.relay(server_tls_options())
        _, port = await self.tunnel(relay)
        await self.echo(port, os.urandom(100000))
        self.assert_links_are_tls(relay)

    async def half_close(self):
        """A user sends 300 kB and half-closes; return (payload, the
        backend's connection, the user)."""
        certs = self.make_certs()
        relay = await self.relay(server_tls_options(certs.self_cert, certs.self_key))
        backend_port, accepted = recording_echo_server(self)
        _, port = await self.tunnel(relay, backend=backend_port)
        user = await connect_user(self, port)
        payload = os.urandom(300000)
        user.transport.write(payload)
        user.transport.loseWriteConnection()
        backend = await within(accepted.get())
        return payload, backend, user

    @async_test
    async def test_half_close_over_tls(self):
        """A user that half-closes after sending: every byte it sent before
        its EOF reaches the backend; with tcp_mux the reply comes back
        whole, without it the tunnel is closed in full (TLS cannot
        half-close) and the user gets at most a prefix of the reply."""
        payload, backend, user = await self.half_close()
        at_backend = await within(backend.wait_for(len(payload)))
        self.assertEqual(at_backend, payload)
        received = await within(user.closed)
        if self.mux:
            self.assertEqual(received, payload)
        else:
            self.assertEqual(received, payload[: len(received)])

    @async_test
    async def test_half_close_ends_backend_input(self):
        """After a user's half-close the backend sees the end of its input
        too, holding exactly what the user sent."""
        payload, backend, _ = await self.half_close()
        self.assertEqual(await within(backend.ended), payload)

    # (b) the custom head byte.

    @async_test
    async def test_custom_tls_first_byte(self):
        """disable_custom_tls_first_byte = false puts 0x17 before each
        ClientHello, and the server takes it."""
        certs = self.make_certs()
        relay = await self.relay(server_tls_options(certs.self_cert, certs.self_key))
        tap_port, heads = head_tap(self, relay.port)
        _, port = await self.tunnel(
            relay, "disable_custom_tls_first_byte = false\n", port=tap_port
        )
        await self.echo(port, os.urandom(200000))
        self.assert_links_are_tls(relay)
        self.assertTrue(heads)
        for head in heads:
            self.assertEqual(head, b"\x17\x16")

    # (c) a client verifying the server.

    @async_test
    async def test_verified_ip_address(self):
        """With tls_trusted_ca_file the client verifies the server's
        certificate against server_addr 127.0.0.1 (an IP SAN)."""
        certs = self.make_certs()
        relay = await self.relay(
            server_tls_options(certs.server_cert, certs.server_key)
        )
        _, port = await self.tunnel(relay, f"tls_trusted_ca_file = {certs.ca}\n")
        await self.echo(port)
        self.assert_links_are_tls(relay)

    @async_test
    async def test_verified_server_name(self):
        """tls_server_name = relay.example.test is checked against the
        certificate's DNS SAN."""
        certs = self.make_certs()
        relay = await self.relay(
            server_tls_options(certs.server_cert, certs.server_key)
        )
        _, port = await self.tunnel(
            relay,
            f"tls_trusted_ca_file = {certs.ca}\ntls_server_name = {SERVER_NAME}\n",
        )
        await self.echo(port)

    @async_test
    async def test_wrong_server_name(self):
        """A server name the certificate does not carry fails the login
        with an error about the certificate."""
        certs = self.make_certs()
        relay = await self.relay(
            server_tls_options(certs.server_cert, certs.server_key)
        )
        error = await self.refused(
            relay,
            f"tls_trusted_ca_file = {certs.ca}\ntls_server_name = wrong.example.test\n",
        )
        self.assertIn("TLS with the server failed", error)
        self.assertIn("certificate", error)
        self.assertIn("wrong.example.test", error)

    @async_test
    async def test_untrusted_server(self):
        """A self-signed server certificate fails a verifying client's
        login with an error about the certificate."""
        certs = self.make_certs()
        relay = await self.relay(server_tls_options(certs.self_cert, certs.self_key))
        error = await self.refused(relay, f"tls_trusted_ca_file = {certs.ca}\n")
        self.assertIn("TLS with the server failed", error)
        self.assertIn("certificate verify failed", error)

    # (d) mutual TLS.

    def mtls_options(self, certs):
        return server_tls_options(certs.server_cert, certs.server_key, certs.ca)

    @async_test
    async def test_mtls_client_certificate(self):
        """A server with tls_trusted_ca_file accepts a client presenting a
        certificate from that CA."""
        certs = self.make_certs()
        relay = await self.relay(
            self.mtls_options(certs), f"tls_trusted_ca_file = {certs.ca}\n"
        )
        _, port = await self.tunnel(
            relay,
            f"tls_cert_file = {certs.client_cert}\ntls_key_file = {certs.client_key}\n",
        )
        await self.echo(port, os.urandom(100000))
        self.assert_links_are_tls(relay)

    @async_test
    async def test_mtls_without_certificate(self):
        """A TLS client with no certificate is refused by an mTLS server;
        both sides say it is about the certificate."""
        certs = self.make_certs()
        relay = await self.relay(
            self.mtls_options(certs), f"tls_trusted_ca_file = {certs.ca}\n"
        )
        log = LogCapture(self)
        error = await self.refused(relay)
        self.assertIn("TLS with the server failed", error)
        self.assertIn("certificate", error)
        line = await within(log.when_logged("TLS handshake failed"))
        self.assertIn("certificate", line)

    @async_test
    async def test_mtls_certificate_from_other_ca(self):
        """A client certificate from an unrelated CA is refused, and the
        client is told the CA is unknown."""
        certs = self.make_certs()
        relay = await self.relay(
            self.mtls_options(certs), f"tls_trusted_ca_file = {certs.ca}\n"
        )
        log = LogCapture(self)
        error = await self.refused(
            relay,
            f"tls_cert_file = {certs.other_cert}\ntls_key_file = {certs.other_key}\n",
        )
        self.assertIn("TLS with the server failed", error)
        self.assertIn("unknown ca", error)
        line = await within(log.when_logged("TLS handshake failed"))
        self.assertIn("certificate verify failed", line)

    @async_test
    async def test_mtls_refuses_plain(self):
        """An mTLS server (tls_only implied) refuses a plain client."""
        certs = self.make_certs()
        relay = await self.relay(
            self.mtls_options(certs), f"tls_trusted_ca_file = {certs.ca}\n"
        )
        self.assertTrue(relay.config.tls_only)
        log = LogCapture(self)
        error = await self.refused(relay, tls=False)
        self.assertIn("closed the connection before answering the Login", error)
        await within(log.when_logged("refusing a non-TLS connection", "tls_only"))

    # (e) tls_only without client certificates.

    @async_test
    async def test_tls_only(self):
        """tls_only = true refuses a plain client with one server line and
        serves a TLS client."""
        certs = self.make_certs()
        relay = await self.relay(
            server_tls_options(certs.self_cert, certs.self_key), "tls_only = true\n"
        )
        log = LogCapture(self)
        await self.refused(relay, tls=False)
        lines = log.lines("refusing a non-TLS connection", "tls_only", "first byte 0x")
        self.assertEqual(len(lines), 1, lines)
        _, port = await self.tunnel(relay)
        await self.echo(port, os.urandom(100000))
        self.assert_links_are_tls(relay)

    # (f) the unauthenticated deadline covers TLS.

    @async_test
    async def test_busy_tls_peer_closed_at_deadline(self):
        """A TLS peer that completes its handshake and keeps busy without
        logging in (tcp_mux: a yamux session opening a silent stream every
        0.1 s; without: a frame trickled byte by byte) is closed at the
        deadline counted from its accept, and a client logs in
        meanwhile."""
        deadline = 1.5
        relay = await self.relay(server_tls_options())
        relay.server.set_handshake_timeouts(deadline)
        busy = _BusyPeer() if self.mux else _TricklingPeer()
        endpoint = wrapClientTLS(
            client_tls_options("127.0.0.1"),
            TCP4ClientEndpoint(reactor, "127.0.0.1", relay.port, timeout=5),
        )
        started = reactor.seconds()
        await within(endpoint.connect(Factory.forProtocol(lambda: busy)))
        self.addCleanup(busy.stop)
        await within(busy.handshake, 5)
        _, port = await self.tunnel(relay)
        await within(busy.closed, deadline + 5)
        lived = reactor.seconds() - started
        self.assertGreater(busy.ticks, 3)
        self.assertGreaterEqual(lived, deadline * 0.9)
        self.assertLess(lived, deadline + 5)
        await self.echo(port)


@implementer(IHandshakeListener)
class _BusyPeer(YamuxSession):
    """A yamux client over TLS that opens a silent stream every 0.1 s."""

    def __init__(self):
        super().__init__(is_client=True, clock=reactor, keepalive_interval=0)
        self.handshake = Deferred()
        self.closed = self.when_closed()
        self.ticks = 0
        self._loop = LoopingCall(self.tick)

    def handshakeCompleted(self):
        self.handshake.callback(None)
        self._loop.start(0.1)

    def tick(self):
        self.ticks += 1
        self.open_stream(Protocol())

    def stop(self):
        if self._loop.running:
            self._loop.stop()
        self.close()
        return within(self.closed)

    def connectionLost(self, reason):
        if self._loop.running:
            self._loop.stop()
        super().connectionLost(reason)


@implementer(IHandshakeListener)
class _TricklingPeer(Protocol):
    """An frp connection over TLS that sends a Login frame one byte every
    0.1 s."""

    FRAME = b"o" + (200).to_bytes(8, "big") + b"{" * 200

    def __init__(self):
        self.handshake = Deferred()
        self.closed = Deferred()
        self.ticks = 0
        self._loop = LoopingCall(self.tick)

    def handshakeCompleted(self):
        self.handshake.callback(None)
        self._loop.start(0.1)

    def tick(self):
        self.transport.write(self.FRAME[self.ticks : self.ticks + 1])
        self.ticks += 1

    def stop(self):
        if not self.closed.called:
            self.transport.abortConnection()
        return within(self.closed)

    def connectionLost(self, reason):
        if self._loop.running:
            self._loop.stop()
        self.closed.callback(None)


class TLSNoMuxTests(TLSTunnelMixin, TestCase):
    mux = False


class TLSMuxTests(TLSTunnelMixin, TestCase):
    mux = True
