# -*- test-case-name: tests.integration.test_hostile -*-
"""
Hostile input on the server's bind port, end to end with real sockets.

Each test first brings up a real client with an echo tunnel, then lets a
hand-driven peer send something frp would refuse.  It checks that the
hostile connection is closed within a bound, that the server said why in
one log line naming the peer, and that the server still serves: the
existing tunnel echoes byte-exact and a new client can log in.

With ``tcp_mux`` on, frp-level input (frames, logins, work connections)
travels inside a yamux stream, as a real frpc would send it; input aimed at
the bytes before any framing (noise, silence, a mismatched ``tcp_mux``)
goes on the raw TCP connection.
"""

import os
import random
import struct

from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import LogLevel
from twisted.trial.unittest import TestCase

from labrelay.mux.frames import (
    FLAG_ACK,
    FLAG_SYN,
    GO_AWAY_PROTOCOL_ERROR,
    TYPE_DATA,
    TYPE_GO_AWAY,
    TYPE_PING,
    TYPE_WINDOW_UPDATE,
    FrameParser,
    encode_header,
)
from labrelay.mux.session import YamuxSession
from labrelay.protocol import messages
from labrelay.protocol.framing import V2_MAGIC, MessageParser

from ..support.frp_peer import FrpPeer, login
from ..support.harness import (
    Client,
    LogCapture,
    Relay,
    async_test,
    connect_user,
    echo_server,
    tcp_proxy,
    within,
)

#: The shortened first-byte / first-message / idle-session bound.
HANDSHAKE = 0.5

#: How long an immediately refused connection may take to be closed.
PROMPT = 5

#: What a server sends before closing a yamux session it cannot parse.
GO_AWAY_PROTOCOL = encode_header(TYPE_GO_AWAY, 0, 0, GO_AWAY_PROTOCOL_ERROR)


def frame(type_byte: bytes, body: bytes, length=None) -> bytes:
    """An frp v1 frame; *length* overrides the header's length field."""
    if length is None:
        length = len(body)
    return type_byte + struct.pack(">q", length) + body


def garbage(size: int, seed: int) -> bytes:
    """Deterministic noise whose first byte is neither a TLS byte nor an
    frp type byte nor a yamux version, so every run takes the same path."""
    return b"\xfe" + random.Random(seed).randbytes(size - 1)


def decode_all(data: bytes) -> list:
    """Every plaintext frp message in *data*, which must hold nothing else."""
    parser = MessageParser()
    parser.feed(data)
    found = list(parser.messages())
    assert parser.buffered == 0, f"trailing bytes after {found!r}"
    return found


class HostileMixin:
    mux = True
    timeout = 30

    async def start_tunnel(self, extra="", handshake=HANDSHAKE):
        """A relay with short handshake bounds and one working echo tunnel."""
        self.relay = await Relay(self, mux=self.mux, extra=extra).start()
        self.relay.server.set_handshake_timeouts(handshake)
        backend = echo_server(self)
        client = await Client(
            self, self.relay.port, tcp_proxy("echo", backend), mux=self.mux
        ).start()
        self.tunnel_port = await client.running("echo")
        self.late_clients = 0
        self.log = LogCapture(self)

    # Hostile connections.

    async def _connect(self, protocol, source=None):
        endpoint = TCP4ClientEndpoint(
            reactor,
            "127.0.0.1",
            self.relay.port,
            timeout=5,
            bindAddress=source and (source, 0),
        )
        factory = Factory.forProtocol(lambda: protocol)
        factory.noisy = False
        await within(endpoint.connect(factory))
        # the server names a peer by its address as host:port
        host = protocol.transport.getHost()
        return f"{host.host}:{host.port}"

    async def open_raw(self, source=None) -> FrpPeer:
        """A bare TCP connection to the bind port (from *source*, an
        address of 127.0.0.0/8)."""
        peer = FrpPeer()
        peer.label = await self._connect(peer, source)
        self.addCleanup(self._close_peer, peer)
        return peer

    async def open_frp(self) -> FrpPeer:
        """One frp connection: a TCP connection, or under tcp_mux a stream
        of a fresh yamux session."""
        if not self.mux:
            return await self.open_raw()
        session = YamuxSession(is_client=True, clock=reactor, keepalive_interval=0)
        label = await self._connect(session)
        self.addCleanup(self._close_session, session)
        peer = FrpPeer()
        peer.label = label
        session.open_stream(peer)
        return peer

    def _close_peer(self, peer):
        if not peer.closed.called:
            peer.transport.abortConnection()
        return within(peer.closed)

    def _close_session(self, session):
        d = session.when_closed()
        session.close()
        return within(d)

    # Assertions.

    async def assert_closed_promptly(self, peer):
        """The server closes *peer* within PROMPT seconds; return what
        *peer* received."""
        return await within(peer.closed, PROMPT)

    async def assert_closed_after_bound(self, peer):
        """The server closes *peer* on the handshake bound: not before it,
        and not long after."""
        received = await within(peer.closed, HANDSHAKE + PROMPT)
        self.assertGreaterEqual(peer.closed_at - peer.connected_at, HANDSHAKE * 0.8)
        return received

    def assert_one_line(self, peer, *substrings):
        """
        The server logged exactly one line about *peer* saying all of
        *substrings*, logged no other warning about it, and no traceback.
        """
        about = [
            (level, text)
            for level, text, _ in self.log.events
            if level is not None and peer.label + ":" in text
        ]
        matching = [text for _, text in about if all(s in text for s in substrings)]
        self.assertEqual(
            len(matching), 1, f"lines about {peer.label} saying {substrings}: {about!r}"
        )
        warnings = [text for level, text in about if level >= LogLevel.warn]
        self.assertLessEqual(set(warnings), set(matching), warnings)
        self.assertEqual(self.log.failures(), [])
        return matching[0]

    async def assert_still_serving(self):
        """The tunnel made before the attack echoes byte-exact, and a new
        client logs in and gets a working proxy."""
        user = await connect_user(self, self.tunnel_port)
        payload = os.urandom(256 * 1024)
        user.transport.write(payload)
        self.assertEqual(await within(user.wait_for(len(payload)), 10), payload)
        self.late_clients += 1
        name = f"late{self.late_clients}"
        backend = echo_server(self)
        client = await Client(
            self, self.relay.port, tcp_proxy(name, backend), mux=self.mux
        ).start()
        await within(client.client.first_login)
        port = await client.running(name)
        user = await connect_user(self, port)
        user.transport.write(b"late hello")
        self.assertEqual(await within(user.wait_for(10)), b"late hello")

    # Cases for both tcp_mux settings: before any framing.

    @async_test
    async def test_random_garbage(self):
        """Noise on the bind port is refused at once with one log line."""
        await self.start_tunnel()
        peer = await self.open_raw()
        peer.send_raw(garbage(4096, seed=1))
        received = await self.assert_closed_promptly(peer)
        if self.mux:
            self.assertEqual(received, GO_AWAY_PROTOCOL)
            self.assert_one_line(
                peer, "yamux protocol error", "unsupported yamux version 254"
            )
        else:
            self.assertEqual(received, b"")
            self.assert_one_line(peer, "unknown message type byte b'\\xfe'")
        await self.assert_still_serving()

    @async_test
    async def test_silent_connection(self):
        """A connection that never sends a byte is closed after the bound."""
        await self.start_tunnel()
        peer = await self.open_raw()
        received = await self.assert_closed_after_bound(peer)
        self.assertEqual(received, b"")
        self.assert_one_line(peer, "no data within 0.5s of connecting")
        await self.assert_still_serving()

    @async_test
    async def test_tls_garbage(self):
        """A 0x16 byte followed by noise fails the TLS handshake at once,
        logged with the peer and OpenSSL's reason."""
        await self.start_tunnel()
        peer = await self.open_raw()
        peer.send_raw(b"\x16" + garbage(300, seed=2))
        await self.assert_closed_promptly(peer)
        self.assert_one_line(peer, "TLS handshake failed")
        await self.assert_still_serving()

    @async_test
    async def test_stalled_tls_handshake(self):
        """frp's 0x17 head byte and then silence is closed after the bound
        (the bound covers the TLS handshake)."""
        await self.start_tunnel()
        peer = await self.open_raw()
        peer.send_raw(b"\x17")
        received = await self.assert_closed_after_bound(peer)
        self.assertEqual(received, b"")
        if self.mux:
            self.assert_one_line(peer, "yamux session opened no stream within 0.5s")
        else:
            self.assert_one_line(peer, "no frp message within 0.5s")
        await self.assert_still_serving()

    @async_test
    async def test_many_garbage_connections(self):
        """200 noisy connections at once are all closed promptly, each with
        its own log line, and the server keeps serving."""
        await self.start_tunnel()

        async def attack(seed):
            peer = await self.open_raw()
            peer.send_raw(garbage(512, seed=seed))
            return peer

        started = reactor.seconds()
        peers = await within(
            defer.gatherResults([defer.ensureDeferred(attack(i)) for i in range(200)]),
            20,
        )
        await within(defer.gatherResults([p.closed for p in peers]), 20)
        self.assertLess(reactor.seconds() - started, 20)
        expected = (
            "unsupported yamux version 254"
            if self.mux
            else "unknown message type byte b'\\xfe'"
        )
        for peer in peers:
            self.assert_one_line(peer, expected)
        # only the tunnel's client is left
        self.assertEqual(len(self.relay.server.sessions), int(self.mux))
        # its control and its one pooled work connection (pool_count = 1)
        self.assertEqual(len(self.relay.server.connections), 2)
        self.assertEqual(len(self.relay.server.registry.controls), 1)
        await self.assert_still_serving()

    @async_test
    async def test_flood_with_live_client(self):
        """
        A flood of connections that never log in, from four addresses,
        three times the total cap of unauthenticated connections: the live
        client's tunnel keeps working (without tcp_mux each user needs a
        new work connection from the client's address), a client from a
        fresh address logs in at once, and the flood's oldest connections
        are evicted to make room (one rate-limited line).
        """
        cap = 20
        await self.start_tunnel(
            extra=f"max_unauthenticated_connections = {cap}\npool_count = 0\n",
            handshake=10,
        )
        # what a yamux session or an frp connection accepts without
        # identifying itself: a Ping, or the first bytes of a frame head
        hello = encode_header(TYPE_PING, FLAG_SYN, 0, 1) if self.mux else b"o\x00\x00"
        flood = []
        for i in range(3 * cap):
            peer = await self.open_raw(source=f"127.0.0.{2 + i % 4}")
            peer.send_raw(hello)
            flood.append(peer)
        await within(defer.gatherResults([p.closed for p in flood[:cap]]), PROMPT)
        guard = self.relay.server.guard
        self.assertLessEqual(guard.unauthenticated, cap)
        for i in range(3):
            user = await connect_user(self, self.tunnel_port)
            user.transport.write(b"through the flood %d" % i)
            self.assertEqual(
                await within(user.wait_for(19), 10), b"through the flood %d" % i
            )
            user.transport.loseConnection()
            await within(user.closed)
        backend = echo_server(self)
        fresh = Client(
            self,
            self.relay.port,
            tcp_proxy("fresh", backend),
            mux=self.mux,
            extra="connect_server_local_ip = 127.0.0.9\n",
        )
        started = reactor.seconds()
        await fresh.start()
        await within(fresh.client.first_login, PROMPT)
        self.assertLess(reactor.seconds() - started, PROMPT)
        port = await fresh.running("fresh")
        user = await connect_user(self, port)
        user.transport.write(b"fresh")
        self.assertEqual(await within(user.wait_for(5)), b"fresh")
        self.assertTrue(self.log.lines("closing the oldest one from 127.0.0."))
        self.assertEqual(self.log.lines("refusing new connections"), [])

    # Cases for both tcp_mux settings: frp frames.

    @async_test
    async def test_truncated_frame(self):
        """A frame header with no body is closed once the first-message
        bound has passed."""
        await self.start_tunnel()
        peer = await self.open_frp()
        peer.send_raw(frame(b"o", b"", length=100))
        received = await self.assert_closed_after_bound(peer)
        self.assertEqual(received, b"")
        self.assert_one_line(peer, "no frp message within 0.5s")
        await self.assert_still_serving()

    @async_test
    async def test_oversized_frame(self):
        """A length one byte over frp's 10240 limit is refused at once,
        without waiting for the body."""
        await self.start_tunnel()
        peer = await self.open_frp()
        peer.send_raw(frame(b"o", b"{", length=10241))
        await self.assert_closed_promptly(peer)
        self.assert_one_line(peer, "message length 10241 exceeds the limit of 10240")
        await self.assert_still_serving()

    @async_test
    async def test_negative_length(self):
        """A negative length is refused at once."""
        await self.start_tunnel()
        peer = await self.open_frp()
        peer.send_raw(frame(b"o", b"{}", length=-1))
        await self.assert_closed_promptly(peer)
        self.assert_one_line(peer, "negative message length -1")
        await self.assert_still_serving()

    @async_test
    async def test_unknown_type_byte(self):
        """A type byte frp does not know is refused at once."""
        await self.start_tunnel()
        peer = await self.open_frp()
        peer.send_raw(frame(b"Z", b"{}"))
        await self.assert_closed_promptly(peer)
        self.assert_one_line(peer, "unknown message type byte b'Z'")
        await self.assert_still_serving()

    @async_test
    async def test_body_not_an_object(self):
        """A JSON body that is an array, a string or a number is refused."""
        await self.start_tunnel()
        for body, kind in ((b"[]", "list"), (b'"x"', "str"), (b"1", "int")):
            peer = await self.open_frp()
            peer.send_raw(frame(b"o", body))
            received = await self.assert_closed_promptly(peer)
            self.assertEqual(received, b"")
            self.assert_one_line(peer, f"message body is JSON {kind}, not an object")
        self.assertEqual(len(self.relay.server.registry.controls), 1)
        await self.assert_still_serving()

    @async_test
    async def test_wire_protocol_v2(self):
        """frp's v2 magic is refused with a line naming protocol v2."""
        await self.start_tunnel()
        peer = await self.open_frp()
        peer.send_raw(V2_MAGIC + b"\x00\x01\x00\x00\x00\x00\x00\x02{}")
        await self.assert_closed_promptly(peer)
        self.assert_one_line(peer, "frp wire protocol v2")
        await self.assert_still_serving()

    @async_test
    async def test_wrong_token(self):
        """A Login with a wrong token gets a plaintext LoginResp carrying
        frp's error, then the connection is closed."""
        await self.start_tunnel()
        # The answer comes after the first failure's 0.5 s delay, within
        # the deadline (as with the defaults: at most 8 s of 10 s).
        self.relay.server.guard.timeout = 5
        peer = await self.open_frp()
        peer.send(login(token="not the token", pool_count=1))
        received = await self.assert_closed_promptly(peer)
        [response] = decode_all(received)
        self.assertIsInstance(response, messages.LoginResp)
        self.assertEqual(
            response.error, "token in login doesn't match token from configuration"
        )
        self.assertEqual(response.run_id, "")
        self.assert_one_line(peer, "login refused: wrong token")
        self.assertEqual(len(self.relay.server.registry.controls), 1)
        await self.assert_still_serving()

    @async_test
    async def test_work_conn_unknown_run_id(self):
        """A NewWorkConn naming no logged-in client is closed; anything it
        is told first is a StartWorkConn carrying an error."""
        await self.start_tunnel()
        peer = await self.open_frp()
        peer.send(messages.NewWorkConn(run_id="0123456789abcdef"))
        received = await self.assert_closed_promptly(peer)
        for message in decode_all(received):
            self.assertIsInstance(message, messages.StartWorkConn)
            self.assertNotEqual(message.error, "")
        self.assert_one_line(peer, "unknown run_id", "0123456789abcdef")
        await self.assert_still_serving()

    # Over an authenticated control connection.

    @async_test
    async def test_new_proxy_remote_port_out_of_range(self):
        """NewProxy with remote_port 70000 or -1 gets a NewProxyResp error,
        and the control keeps working."""
        await self.start_tunnel()
        peer = await self.open_frp()
        await peer.log_in()
        for name, port in (("huge", 70000), ("negative", -1)):
            peer.send(
                messages.NewProxy(proxy_name=name, proxy_type="tcp", remote_port=port)
            )
        huge, negative = await within(peer.wait_messages(messages.NewProxyResp, 2))
        self.assertEqual((huge.proxy_name, negative.proxy_name), ("huge", "negative"))
        self.assertIn("70000", huge.error)
        self.assertIn("-1", negative.error)
        self.assertEqual((huge.remote_addr, negative.remote_addr), ("", ""))
        self.assertNotIn("huge", self.relay.server.registry.proxies)
        self.assertNotIn("negative", self.relay.server.registry.proxies)
        refusals = self.log.lines(peer.label + ":", "refused", min_level=LogLevel.warn)
        self.assertEqual(len(refusals), 2, refusals)
        self.assertIn("proxy [huge] refused", refusals[0])
        self.assertIn("proxy [negative] refused", refusals[1])
        # the same control still registers a proxy with a sane port
        peer.send(messages.NewProxy(proxy_name="sane", proxy_type="tcp"))
        *_, sane = await within(peer.wait_messages(messages.NewProxyResp, 3))
        self.assertEqual(sane.proxy_name, "sane")
        self.assertEqual(sane.error, "")
        self.assertTrue(sane.remote_addr.startswith(":"))
        self.assertFalse(peer.closed.called)
        await self.assert_still_serving()

    @async_test
    async def test_unknown_type_on_control(self):
        """An unknown type byte inside the encrypted control stream closes
        that control and nothing else."""
        await self.start_tunnel()
        peer = await self.open_frp()
        response = await peer.log_in()
        self.assertIn(response.run_id, self.relay.server.registry.controls)
        peer.send_raw(frame(b"Z", b"{}"))
        await self.assert_closed_promptly(peer)
        self.assert_one_line(peer, "closing control", "unknown message type byte b'Z'")
        self.assertNotIn(response.run_id, self.relay.server.registry.controls)
        self.assertEqual(len(self.relay.server.registry.controls), 1)
        await self.assert_still_serving()


class NoMuxHostileTests(HostileMixin, TestCase):
    mux = False

    @async_test
    async def test_yamux_to_plain_server(self):
        """A yamux SYN sent to a server without tcp_mux is refused on that
        stream with a LoginResp and a line naming the tcp_mux mismatch."""
        await self.start_tunnel()
        peer = await self.open_raw()
        peer.send_raw(encode_header(TYPE_WINDOW_UPDATE, FLAG_SYN, 1, 0))
        received = await self.assert_closed_promptly(peer)
        # answered in the client's own (yamux) framing, on the stream it
        # opened, so frpc prints it
        frames = FrameParser().feed(received)
        data = [f for f in frames if f.header.type == TYPE_DATA]
        self.assertEqual([f.header.stream_id for f in data], [1])
        [response] = decode_all(data[0].payload)
        self.assertIsInstance(response, messages.LoginResp)
        self.assertIn("server has tcp_mux = false", response.error)
        self.assertEqual(frames[-1].header.type, TYPE_GO_AWAY)
        self.assert_one_line(peer, "tcp_mux mismatch")
        await self.assert_still_serving()

    @async_test
    async def test_yamux_ping_to_plain_server(self):
        """A yamux frame that opens no stream, sent to a server without
        tcp_mux, is refused with a line pointing at tcp_mux."""
        await self.start_tunnel()
        peer = await self.open_raw()
        peer.send_raw(encode_header(TYPE_PING, FLAG_SYN, 0, 1))
        received = await self.assert_closed_promptly(peer)
        self.assertEqual(received, b"")
        self.assert_one_line(peer, "unknown message type byte b'\\x00'", "tcp_mux")
        await self.assert_still_serving()


class MuxHostileTests(HostileMixin, TestCase):
    mux = True

    @async_test
    async def test_plain_login_to_mux_server(self):
        """A plain frp Login sent to a tcp_mux server is refused with a
        plaintext LoginResp and a line naming the tcp_mux mismatch."""
        await self.start_tunnel()
        peer = await self.open_raw()
        peer.send(login(pool_count=1))
        received = await self.assert_closed_promptly(peer)
        # answered in the client's own (plain) framing, so frpc prints it
        [response] = decode_all(received)
        self.assertIsInstance(response, messages.LoginResp)
        self.assertIn("server has tcp_mux = true", response.error)
        self.assert_one_line(peer, "tcp_mux mismatch")
        self.assertEqual(len(self.relay.server.registry.controls), 1)
        await self.assert_still_serving()

    @async_test
    async def test_session_without_stream(self):
        """A yamux session that answers pings but opens no stream is closed
        after the bound."""
        await self.start_tunnel()
        peer = await self.open_raw()
        peer.send_raw(encode_header(TYPE_PING, FLAG_SYN, 0, 7))
        received = await self.assert_closed_after_bound(peer)
        # the session was alive (it answered the ping) until the bound
        self.assertEqual(received, encode_header(TYPE_PING, FLAG_ACK, 0, 7))
        self.assert_one_line(peer, "yamux session opened no stream within 0.5s")
        self.assertEqual(len(self.relay.server.sessions), 1)  # the tunnel's
        await self.assert_still_serving()
