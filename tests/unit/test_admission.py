# -*- test-case-name: tests.unit.test_admission -*-
"""
The server's admission rules on a MemoryReactorClock: the deadline of an
unauthenticated connection or yamux session (``unauthenticated_timeout``),
which only a successful Login or a verified NewWorkConn clears; the idle
timeout of authenticated yamux sessions (``session_idle_timeout``); and the
cap on work-only sessions per client (``max_sessions_per_client``).

Each peer is a real yamux client session (or, with ``tcp_mux = false``, a
bare frp connection) on a StringTransport, wired to a protocol built by
the server's bind-port factory; :meth:`MuxPeer.pump` moves the bytes.
"""

import attrs
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import LogLevel
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from labrelay import FRP_VERSION
from labrelay.config import ConfigError, parse_server_config
from labrelay.mux.session import YamuxSession
from labrelay.protocol import messages
from labrelay.protocol.auth import privilege_key
from labrelay.protocol.framing import MessageParser, encode_message
from labrelay.server.service import RelayServer

from ..support.harness import LogCapture

TOKEN = "admission-token"
NOW = 1_700_000_000
BIND = IPv4Address("TCP", "127.0.0.1", 7000)


def login(**fields):
    fields.setdefault("pool_count", 0)
    return messages.Login(
        version=FRP_VERSION,
        timestamp=NOW,
        privilege_key=privilege_key(TOKEN, NOW),
        **fields,
    )


def work_conn(run_id, token=TOKEN):
    return messages.NewWorkConn(
        run_id=run_id, timestamp=NOW, privilege_key=privilege_key(token, NOW)
    )


@implementer(IHalfCloseableProtocol)
class FrpStream(Protocol):
    """The client's end of one frp connection (a yamux stream or a bare
    TCP connection): sends messages, keeps the plaintext ones it gets
    (all this test needs: it reads nothing after LoginResp), and closes
    when the server has closed its side, as frpc does."""

    def __init__(self):
        self.parser = MessageParser()
        self.received = []
        self.closed = False

    def send(self, message):
        self.transport.write(encode_message(message))

    def dataReceived(self, data):
        if self.received and isinstance(self.received[0], messages.LoginResp):
            return  # encrypted from here on
        self.parser.feed(data)
        while True:
            message = self.parser.next_message()
            if message is None:
                return
            self.received.append(message)

    def readConnectionLost(self):
        self.transport.loseConnection()

    def writeConnectionLost(self):
        pass

    def connectionLost(self, reason):
        self.closed = True


class MuxPeer:
    """A yamux client session from *host*, connected in memory to a
    protocol of the server's bind-port factory."""

    def __init__(self, case, host):
        port = 40000 + len(case.peers)
        address = IPv4Address("TCP", host, port)
        self.server_side = case.bind_factory.buildProtocol(address)
        self.server_transport = StringTransport(hostAddress=BIND, peerAddress=address)
        self.session = YamuxSession(
            is_client=True, clock=case.reactor, keepalive_interval=0
        )
        self.client_transport = StringTransport(hostAddress=address, peerAddress=BIND)
        self.lost = False
        self.server_side.makeConnection(self.server_transport)
        self.session.makeConnection(self.client_transport)
        case.peers.append(self)

    @property
    def closed_by_server(self) -> bool:
        return self.server_transport.disconnecting

    def open(self, first=None) -> FrpStream:
        """Open a stream, send *first* on it if given, and pump."""
        stream = FrpStream()
        self.session.open_stream(stream)
        if first is not None:
            stream.send(first)
        self.pump()
        return stream

    def send_raw(self, data: bytes) -> None:
        self.server_side.dataReceived(data)
        self.pump()

    def pump(self) -> None:
        for _ in range(20):
            up = self.client_transport.value()
            down = self.server_transport.value()
            self.client_transport.clear()
            self.server_transport.clear()
            if not up and not down:
                break
            if up and not self.lost:
                self.server_side.dataReceived(up)
            if down and not self.lost:
                self.session.dataReceived(down)
        if self.server_transport.disconnecting or self.client_transport.disconnecting:
            self.lose()

    def lose(self) -> None:
        """The reactor's part: both ends see the connection end, once."""
        if not self.lost:
            self.lost = True
            self.server_side.connectionLost(Failure(ConnectionDone()))
            self.session.connectionLost(Failure(ConnectionDone()))


class AdmissionCase(SynchronousTestCase):
    """A RelayServer on a MemoryReactorClock whose clock reads NOW."""

    extra = ""
    mux = True

    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.reactor.advance(NOW)
        self.peers = []
        self.log = LogCapture(self)
        config = parse_server_config(
            f"[common]\nbind_addr = 127.0.0.1\nbind_port = 7000\n"
            f"token = {TOKEN}\ntcp_mux = {str(self.mux).lower()}\n" + self.extra
        )
        self.server = RelayServer(config, self.reactor, None)
        self.server.startService()
        self.addCleanup(self._stop)
        [(_, self.bind_factory, _, _)] = [
            s for s in self.reactor.tcpServers if s[0] == 7000
        ][-1:]

    def _stop(self):
        stopped = self.server.stopService()
        for _ in range(3):
            for peer in self.peers:
                peer.pump()
        for peer in self.peers:
            peer.lose()
        self.successResultOf(stopped)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def advance(self, seconds):
        """Let *seconds* pass, then deliver what the server wrote and its
        closes."""
        self.reactor.advance(seconds)
        for peer in self.peers:
            peer.pump()

    def warnings(self, *substrings):
        return self.log.lines(*substrings, min_level=LogLevel.warn)

    def logged_in(self, host="192.0.2.1"):
        """A yamux session from *host* whose control stream logged in;
        (peer, run_id)."""
        peer = MuxPeer(self, host)
        control = peer.open(login())
        [response] = control.received
        self.assertEqual(response.error, "")
        return peer, response.run_id


class DeadlineTests(AdmissionCase):
    """Only a successful Login or verified NewWorkConn clears the 10 s
    deadline of a yamux session; nothing else it does extends it."""

    def test_busy_session_closed_at_deadline(self):
        """A session that answers Pings, opens a silent stream at 5 s,
        opens and resets streams each second after and sends half a frame
        is closed 10 s after it was accepted, not before."""
        peer = MuxPeer(self, "198.51.100.7")
        self.advance(5)
        silent = peer.open()
        for _ in range(4):
            self.advance(1)
            stream = peer.open()
            stream.transport.abortConnection()
            peer.session._keepalive.ping()
            peer.pump()
        peer.open().transport.write(b"o\x00\x00")
        peer.pump()
        self.advance(0.9)
        self.assertFalse(peer.closed_by_server)
        self.advance(0.1)
        self.assertTrue(peer.closed_by_server)
        self.assertTrue(silent.closed)
        self.assertEqual(self.server.guard.unauthenticated, 0)
        self.assertEqual(self.server.sessions, set())
        [line] = self.warnings("198.51.100.7")
        self.assertIn("no frp message within 10s on a stream", line)

    def test_session_without_stream(self):
        """A session that only answers Pings is closed at the deadline."""
        peer = MuxPeer(self, "198.51.100.7")
        for _ in range(9):
            peer.session._keepalive.ping()
            self.advance(1)
        self.assertFalse(peer.closed_by_server)
        self.advance(1)
        self.assertTrue(peer.closed_by_server)
        [line] = self.warnings("198.51.100.7")
        self.assertIn("yamux session opened no stream within 10s", line)

    def test_refused_login_does_not_clear_it(self):
        """A wrong-token Login on one stream and a NewWorkConn for an
        unknown run_id on another leave the deadline running."""
        peer = MuxPeer(self, "198.51.100.7")
        wrong = peer.open(
            messages.Login(
                version=FRP_VERSION,
                timestamp=NOW,
                privilege_key=privilege_key("wrong", NOW),
            )
        )
        unknown = peer.open(work_conn("0123456789abcdef"))
        self.advance(1)
        self.assertTrue(wrong.received[0].error)
        self.assertTrue(unknown.closed)
        self.advance(9)
        self.assertTrue(peer.closed_by_server)

    def test_login_clears_it(self):
        """A Login at 9.9 s clears the deadline: the session (with its
        control) is still open long after."""
        peer = MuxPeer(self, "198.51.100.7")
        self.advance(9.9)
        control = peer.open(login())
        self.assertEqual(control.received[0].error, "")
        self.advance(1000)
        self.assertFalse(peer.closed_by_server)
        self.assertFalse(control.closed)

    def test_silent_stream_bounded_after_login(self):
        """A silent stream opened before the session logged in gets the
        first-message bound (10 s) from the login; the session stays."""
        peer = MuxPeer(self, "198.51.100.7")
        self.advance(1)
        silent = peer.open()
        self.advance(1)
        control = peer.open(login())
        self.advance(9.9)
        self.assertFalse(silent.closed)
        self.advance(0.1)
        self.assertTrue(silent.closed)
        self.assertFalse(control.closed)
        self.assertFalse(peer.closed_by_server)

    def test_work_conn_clears_it(self):
        """A NewWorkConn for a live client at 9 s clears the deadline of a
        session from another address (with work_conn_same_source =
        false, which lets a work connection come from another session)."""
        self.server.config = attrs.evolve(
            self.server.config, work_conn_same_source=False
        )
        _, run_id = self.logged_in()
        peer = MuxPeer(self, "198.51.100.7")
        self.advance(9)
        work = peer.open(work_conn(run_id))
        self.advance(5)
        self.assertFalse(peer.closed_by_server)
        self.assertFalse(work.closed)
        self.assertEqual(self.server.guard.unauthenticated, 0)


class VerifiedWorkConnTests(AdmissionCase):
    """With authenticate_new_work_conns, only a verified NewWorkConn
    clears the deadline."""

    # work connections from other sessions are refused before any key
    # check unless the binding is relaxed (tests/unit/test_auth_hardening.py)
    extra = "authenticate_new_work_conns = true\nwork_conn_same_source = false\n"

    def test_wrong_key_does_not_clear_it(self):
        """A NewWorkConn with a wrong key for a live run_id is refused
        after its delay and the session still ends at the deadline; a
        right one clears it."""
        _, run_id = self.logged_in()
        bad = MuxPeer(self, "198.51.100.7")
        bad.open(work_conn(run_id, token="wrong"))
        good = MuxPeer(self, "198.51.100.8")
        good.open(work_conn(run_id))
        self.advance(10)
        self.assertTrue(bad.closed_by_server)
        self.assertFalse(good.closed_by_server)


class PlainDeadlineTests(AdmissionCase):
    """Without tcp_mux the deadline bounds each TCP connection."""

    mux = False

    def connect(self, host):
        address = IPv4Address("TCP", host, 40000 + len(self.peers))
        protocol = self.bind_factory.buildProtocol(address)
        transport = StringTransport(hostAddress=BIND, peerAddress=address)
        protocol.makeConnection(transport)
        self.addCleanup(protocol.connectionLost, Failure(ConnectionDone()))
        return protocol, transport

    def test_trickle_closed_at_deadline(self):
        """A connection that sends one byte of a frame head each second is
        closed 10 s after its accept."""
        protocol, transport = self.connect("198.51.100.7")
        head = b"o\x00\x00\x00\x00\x00\x00\x00\x05"
        for i in range(9):
            protocol.dataReceived(head[i : i + 1])
            self.reactor.advance(1)
        self.assertFalse(transport.disconnecting)
        self.reactor.advance(1)
        self.assertTrue(transport.disconnecting)
        [line] = self.warnings("198.51.100.7")
        self.assertIn("no frp message within 10s", line)


class IdleSessionTests(AdmissionCase):
    """Authenticated yamux sessions that carry nothing are closed."""

    # work-only sessions exist only with the binding relaxed: by default
    # a work connection must be a stream of its control's own session
    extra = (
        "session_idle_timeout = 60\nmax_sessions_per_client = 4\n"
        "work_conn_same_source = false\n"
    )

    def test_control_session_never_idle(self):
        """A session carrying a live control stream stays open."""
        peer, _ = self.logged_in()
        self.advance(600)
        self.assertFalse(peer.closed_by_server)

    def test_session_idle_after_control_replaced(self):
        """A session whose control was replaced by a new login elsewhere
        carries nothing and is closed after session_idle_timeout; the new
        one stays."""
        old, run_id = self.logged_in()
        self.advance(5)
        new = MuxPeer(self, "192.0.2.2")
        new.open(login(run_id=run_id))
        old.pump()  # the old control's close reaches its client
        self.advance(59)
        self.assertFalse(old.closed_by_server)
        self.advance(1)
        self.assertTrue(old.closed_by_server)
        self.assertFalse(new.closed_by_server)
        [line] = self.log.lines("session_idle_timeout")
        self.assertIn("192.0.2.1", line)

    def test_unidentified_streams_do_not_keep_it(self):
        """After its work stream ends, a work-only session that keeps
        opening silent streams (each closed after the first-message bound)
        is still closed once the idle timeout has passed."""
        _, run_id = self.logged_in()
        peer = MuxPeer(self, "198.51.100.7")
        work = peer.open(work_conn(run_id))
        work.transport.loseConnection()
        peer.pump()
        for _ in range(5):
            peer.open()
            self.advance(11)
        self.assertFalse(peer.closed_by_server)
        peer.open()
        self.advance(5)
        self.assertTrue(peer.closed_by_server)

    def test_five_thousand_work_sessions(self):
        """5,000 sessions from one address, each sending a NewWorkConn for
        one live client, never hold more than the cap (4) at once; the
        rest are refused and closed at once, and once their streams end
        the held ones are closed after the idle timeout."""
        control, run_id = self.logged_in("192.0.2.1")
        held_at_most = 0
        held = []
        for _i in range(5000):
            peer = MuxPeer(self, "203.0.113.9")
            stream = peer.open(work_conn(run_id))
            if peer.closed_by_server:
                self.assertEqual(
                    stream.received[0].error, "too many sessions for this client"
                )
                self.peers.remove(peer)  # gone: keep the list short
            else:
                held.append((peer, stream))
            held_at_most = max(held_at_most, len(self.server.sessions) - 1)
        self.assertEqual(held_at_most, 4)
        self.assertEqual(len(held), 4)
        self.assertEqual(len(self.server.registry.work_sessions[run_id]), 4)
        self.assertEqual(self.server.guard.unauthenticated, 0)
        self.assertEqual(
            len(self.warnings("max_sessions_per_client = 4")), 1
        )  # rate-limited
        for peer, stream in held:
            stream.transport.loseConnection()
            peer.pump()
        self.advance(59)
        self.assertFalse(any(p.closed_by_server for p, _ in held))
        self.advance(1)
        self.assertTrue(all(p.closed_by_server for p, _ in held))
        self.assertEqual(self.server.registry.work_sessions, {})
        self.assertEqual(len(self.server.sessions), 1)
        self.assertFalse(control.closed_by_server)

    def test_second_client_refused(self):
        """A work-only session serves one client."""
        _, first = self.logged_in("192.0.2.1")
        _, second = self.logged_in("192.0.2.2")
        peer = MuxPeer(self, "203.0.113.9")
        peer.open(work_conn(first))
        other = peer.open(work_conn(second))
        self.assertEqual(other.received[0].error, "too many sessions for this client")
        self.assertTrue(peer.closed_by_server)


class ConfigKeyTests(SynchronousTestCase):
    """The admission keys parse, default and validate."""

    def test_defaults(self):
        config = parse_server_config("[common]\n")
        self.assertEqual(
            (
                config.unauthenticated_timeout,
                config.session_idle_timeout,
                config.max_sessions_per_client,
            ),
            (10, 90, 8),
        )

    def test_values(self):
        config = parse_server_config(
            "[common]\nbind_addr = 127.0.0.1\nunauthenticated_timeout = 3\n"
            "session_idle_timeout = 0\nmax_sessions_per_client = 0\n"
        )
        self.assertEqual(
            (
                config.unauthenticated_timeout,
                config.session_idle_timeout,
                config.max_sessions_per_client,
                config.warnings,
            ),
            (3, 0, 0, ()),
        )

    def test_deadline_cannot_be_off(self):
        """unauthenticated_timeout = 0 is refused, naming the key."""
        with self.assertRaises(ConfigError) as caught:
            parse_server_config("[common]\nunauthenticated_timeout = 0\n")
        self.assertIn(
            "[common] unauthenticated_timeout: must be at least 1",
            str(caught.exception),
        )

    def test_negative_refused(self):
        for key in ("session_idle_timeout", "max_sessions_per_client"):
            with self.assertRaises(ConfigError) as caught:
                parse_server_config(f"[common]\n{key} = -1\n")
            self.assertIn(
                f"[common] {key}: must not be negative", str(caught.exception)
            )
