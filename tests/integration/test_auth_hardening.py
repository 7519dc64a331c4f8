# -*- test-case-name: tests.integration.test_auth_hardening -*-
"""
The server's defences around authentication over real loopback sockets:
under tcp_mux the unauthenticated unit is the TCP connection, a work
connection must come from its client's own session or address, and
labrelay's own client keeps working with every check on.
"""

from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import TestCase

from labrelay import FRP_VERSION
from labrelay.mux.session import YamuxSession
from labrelay.protocol import messages
from labrelay.protocol.auth import privilege_key
from labrelay.protocol.framing import MessageParser, encode_message

from ..support.harness import TOKEN as RELAY_TOKEN
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


class _Stream(Protocol):
    """A protocol on one yamux stream: fires `got` with the first frp
    message it receives."""

    def __init__(self):
        self._parser = MessageParser()
        self.got = defer.Deferred()

    def dataReceived(self, data):
        self._parser.feed(data)
        message = self._parser.next_message()
        if message is not None and not self.got.called:
            self.got.callback(message)


class MuxAdmissionTests(TestCase):
    """Under tcp_mux the unauthenticated unit is the TCP connection."""

    timeout = 30

    async def session(self, relay):
        session = YamuxSession(is_client=True, clock=reactor, keepalive_interval=0)
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", relay.port)
        await within(endpoint.connect(Factory.forProtocol(lambda: session)))
        closed = session.when_closed()

        def close():
            session.close()
            return within(closed)

        self.addCleanup(close)
        return session, closed

    @async_test
    async def test_session_counts_until_a_stream_logs_in(self):
        """Two yamux sessions fill a per-source cap of 2 and a third TCP
        connection is refused at once; once a stream of the first session
        logs in, that session no longer counts."""
        log = LogCapture(self)
        relay = await Relay(self, extra="max_unauthenticated_per_source = 2\n").start()
        guard = relay.server.guard
        first, _ = await self.session(relay)
        second, second_closed = await self.session(relay)
        _, third_closed = await self.session(relay)
        await within(third_closed)
        await within(
            log.when_logged(
                "refusing new connections", "max_unauthenticated_per_source = 2"
            )
        )
        self.assertEqual(guard.unauthenticated_from("127.0.0.1"), 2)
        stream = _Stream()
        first.open_stream(stream)
        now = int(reactor.seconds())
        stream.transport.write(
            encode_message(
                messages.Login(
                    version=FRP_VERSION,
                    timestamp=now,
                    privilege_key=privilege_key(RELAY_TOKEN, now),
                )
            )
        )
        response = await within(stream.got)
        self.assertEqual(response.error, "")
        self.assertEqual(guard.unauthenticated_from("127.0.0.1"), 1)
        self.assertFalse(second_closed.called)


class MuxWorkConnBindingTests(TestCase):
    """#7 with tcp_mux: work connections are streams of their client's
    own yamux session."""

    timeout = 30
    session = MuxAdmissionTests.session

    @async_test
    async def test_stream_of_another_session_refused(self):
        """An attacker who knows a client's run_id opens its own yamux
        session from the same address and offers a NewWorkConn for it:
        refused and never pooled; the client's users are still served."""
        log = LogCapture(self)
        relay = await Relay(self).start()
        backend = echo_server(self)
        client = await Client(self, relay.port, tcp_proxy("echo", backend)).start()
        port = await client.running("echo")
        [(run_id, control)] = relay.server.registry.controls.items()
        attacker, _ = await self.session(relay)
        stream = _Stream()
        attacker.open_stream(stream)
        stream.transport.write(encode_message(messages.NewWorkConn(run_id=run_id)))
        answer = await within(stream.got)
        self.assertEqual(answer.error, "invalid NewWorkConn")
        await within(log.when_logged("not a stream of its client's yamux session"))
        self.assertLessEqual(control.pool.idle_count, 1)  # the client's own
        for i in range(3):
            user = await connect_user(self, port)
            user.transport.write(b"hi %d" % i)
            self.assertEqual(await within(user.wait_for(4)), b"hi %d" % i)


class NoMuxWorkConnBindingTests(TestCase):
    """#7 without tcp_mux, on real sockets: another address is refused."""

    timeout = 30

    @async_test
    async def test_work_conn_from_another_address_refused(self):
        """An attacker on 127.0.0.2 who knows a client's run_id offers a
        NewWorkConn for it: refused with StartWorkConn{error} and closed;
        the client (on 127.0.0.1) still serves its users."""
        log = LogCapture(self)
        relay = await Relay(self, mux=False).start()
        backend = echo_server(self)
        client = await Client(
            self, relay.port, tcp_proxy("echo", backend), mux=False
        ).start()
        port = await client.running("echo")
        [run_id] = relay.server.registry.controls
        attacker = _Stream()
        attacker.closed = defer.Deferred()
        attacker.connectionLost = lambda reason: attacker.closed.callback(None)
        endpoint = TCP4ClientEndpoint(
            reactor, "127.0.0.1", relay.port, bindAddress=("127.0.0.2", 0)
        )
        await within(endpoint.connect(Factory.forProtocol(lambda: attacker)))
        attacker.transport.write(encode_message(messages.NewWorkConn(run_id=run_id)))
        answer = await within(attacker.got)
        self.assertEqual(answer.error, "invalid NewWorkConn")
        await within(attacker.closed)
        self.assertTrue(
            log.lines("from 127.0.0.2, but its client logged in from 127.0.0.1")
        )
        for i in range(3):
            user = await connect_user(self, port)
            user.transport.write(b"hi %d" % i)
            self.assertEqual(await within(user.wait_for(4)), b"hi %d" % i)


class RealClientTests(TestCase):
    """labrelay's own client keeps working with every check on."""

    timeout = 30
    AUTH = "authenticate_new_work_conns = true\nauthenticate_heartbeats = true\n"

    async def round_trips(self, mux):
        relay = await Relay(
            self, mux=mux, extra=self.AUTH + "auth_timestamp_skew = 30\n"
        ).start()
        backend = echo_server(self)
        client = await Client(
            self,
            relay.port,
            tcp_proxy("echo", backend),
            mux=mux,
            extra=self.AUTH + "pool_count = 3\n",
        ).start()
        port = await client.running("echo")
        # four users: the three pooled work connections (whose keys repeat
        # the Login's within its second) and one asked for later
        for i in range(4):
            user = await connect_user(self, port)
            user.transport.write(b"hello %d" % i)
            self.assertEqual(await within(user.wait_for(7)), b"hello %d" % i)
        self.assertEqual(relay.server.guard.unauthenticated, 0)
        self.assertEqual(len(relay.server.registry.controls), 1)

    @async_test
    async def test_with_tcp_mux(self):
        """Authenticated work connections over yamux carry users."""
        await self.round_trips(mux=True)

    @async_test
    async def test_without_tcp_mux(self):
        """Authenticated work connections over TCP carry users, and every
        connection left the unauthenticated count."""
        await self.round_trips(mux=False)
