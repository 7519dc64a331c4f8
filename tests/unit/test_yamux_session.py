# -*- test-case-name: tests.unit.test_yamux_session -*-
"""
Tests for labrelay.mux.session and labrelay.mux.stream: yamux sessions driven
in memory (StringTransport, iosim, Clock) and a replay of a real frpc capture
(tests.integration.test_yamux_session runs one over a real socket).
"""

import json

from twisted.internet import defer
from twisted.internet.error import ConnectionAborted, ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from labrelay.mux.frames import (
    FLAG_ACK,
    FLAG_FIN,
    FLAG_RST,
    FLAG_SYN,
    INITIAL_WINDOW,
    TYPE_DATA,
    TYPE_GO_AWAY,
    TYPE_PING,
    TYPE_WINDOW_UPDATE,
    Header,
)
from labrelay.mux.session import (
    GoAwayReceived,
    SessionClosed,
    SessionError,
    YamuxSession,
)

from ..support import paths
from ..support.yamux import FakeProducer, Pauser, Recorder, frame, headers

MIB = 1024 * 1024
DATA = paths.DATA.child("plain-mux")


@implementer(IHalfCloseableProtocol)
class HalfCloser(Recorder):
    """A Recorder that wants to hear about half-closes."""

    read_lost = False
    write_lost = False

    def readConnectionLost(self):
        self.read_lost = True

    def writeConnectionLost(self):
        self.write_lost = True


class Raiser(Recorder):
    """A Recorder whose dataReceived fails."""

    def dataReceived(self, data):
        raise ValueError("boom")


class _Base(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.addCleanup(lambda: self.assertEqual(self.clock.getDelayedCalls(), []))

    def raw_session(self, **kwargs):
        """A session on a StringTransport; keepalive off unless asked for."""
        kwargs.setdefault("keepalive_interval", 0)
        kwargs.setdefault("is_client", False)
        session = YamuxSession(clock=self.clock, **kwargs)
        transport = StringTransport()
        session.makeConnection(transport)
        self.addCleanup(session.close)
        return session, transport

    def pair(self, server_protocol=Recorder, **kwargs):
        """A client and a server session joined by iosim; returns (client, server, pump)."""
        kwargs.setdefault("keepalive_interval", 0)
        self.accepted = []

        def accept(stream):
            p = server_protocol()
            self.accepted.append((stream, p))
            return p

        server = YamuxSession(
            is_client=False, clock=self.clock, accept_stream=accept, **kwargs
        )
        client = YamuxSession(is_client=True, clock=self.clock, **kwargs)
        pump = iosim.connect(
            server,
            iosim.FakeTransport(server, True),
            client,
            iosim.FakeTransport(client, False),
            clock=self.clock,
        )
        self.addCleanup(pump.flush)
        self.addCleanup(server.close)
        self.addCleanup(client.close)
        return client, server, pump


class OpenAcceptTests(_Base):
    """Opening, accepting and moving data."""

    def test_syn_and_ack_frames(self):
        """open_stream sends WindowUpdate(SYN, 0) (the window grows only as
        data is passed on); the peer's ACK grows our send window and cancels
        the open timer."""
        session, transport = self.raw_session(is_client=True)
        stream = session.open_stream(Recorder())
        self.assertEqual(stream.stream_id, 1)
        self.assertEqual(
            headers(transport), [Header(TYPE_WINDOW_UPDATE, FLAG_SYN, 1, 0)]
        )
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        session.dataReceived(frame(TYPE_WINDOW_UPDATE, FLAG_ACK, 1, 6029312))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(stream.send_window, 6 * MIB)
        self.assertEqual(session.open_stream(Recorder()).stream_id, 3)

    def test_data_both_ways(self):
        """Bytes written on either end arrive on the other; ids are odd from the client."""
        client, server, pump = self.pair()
        mine = Recorder()
        stream = client.open_stream(mine)
        stream.write(b"hello")
        pump.flush()
        [(server_stream, theirs)] = self.accepted
        self.assertEqual((server_stream.stream_id, theirs.received), (1, b"hello"))
        server_stream.write(b"world")
        pump.flush()
        self.assertEqual(mine.received, b"world")
        self.assertEqual((client.streams_open, server.streams_open), (1, 1))
        self.assertIs(stream.getPeer(), client.transport.getPeer())

    def test_accept_none_is_rst(self):
        """accept_stream returning None refuses the stream with RST."""
        session, transport = self.raw_session(accept_stream=lambda stream: None)
        session.dataReceived(frame(TYPE_WINDOW_UPDATE, FLAG_SYN, 1, 0))
        self.assertEqual(
            headers(transport), [Header(TYPE_WINDOW_UPDATE, FLAG_RST, 1, 0)]
        )
        self.assertEqual(session.streams_open, 0)

    def test_backlog_overflow_is_rst(self):
        """Beyond accept_backlog pending accepts a SYN gets RST; a late accept sends ACK and data."""
        pending = []

        def accept(stream):
            pending.append(defer.Deferred())
            return pending[-1]

        session, transport = self.raw_session(accept_stream=accept, accept_backlog=2)
        session.dataReceived(
            frame(TYPE_WINDOW_UPDATE, FLAG_SYN, 1, 0)
            + frame(TYPE_DATA, 0, 1, 3, b"abc")
            + frame(TYPE_WINDOW_UPDATE, FLAG_SYN, 3, 0)
            + frame(TYPE_WINDOW_UPDATE, FLAG_SYN, 5, 0)
        )
        self.assertEqual(
            headers(transport), [Header(TYPE_WINDOW_UPDATE, FLAG_RST, 5, 0)]
        )
        self.assertEqual(session.streams_open, 2)
        proto = Recorder()
        pending[0].callback(proto)
        self.assertEqual(
            headers(transport), [Header(TYPE_WINDOW_UPDATE, FLAG_ACK, 1, 0)]
        )
        self.assertEqual(proto.received, b"abc")
        session.dataReceived(frame(TYPE_WINDOW_UPDATE, FLAG_SYN, 7, 0))
        self.assertEqual(len(pending), 3)


class CloseTests(_Base):
    """FIN, RST and the close timeout."""

    def test_half_close(self):
        """loseWriteConnection gives the peer readConnectionLost; it can still answer."""
        client, server, pump = self.pair(server_protocol=HalfCloser)
        mine = HalfCloser()
        stream = client.open_stream(mine)
        stream.write(b"request")
        stream.loseWriteConnection()
        pump.flush()
        [(server_stream, theirs)] = self.accepted
        self.assertTrue(mine.write_lost)
        self.assertEqual(
            (theirs.received, theirs.read_lost, theirs.lost), (b"request", True, None)
        )
        server_stream.write(b"reply")
        server_stream.loseConnection()
        pump.flush()
        self.assertEqual((mine.received, mine.read_lost), (b"reply", True))
        mine.lost.trap(ConnectionDone)
        theirs.lost.trap(ConnectionDone)
        self.assertEqual((mine.lost_count, theirs.lost_count), (1, 1))
        self.assertEqual((client.streams_open, server.streams_open), (0, 0))

    def test_fin_ends_plain_protocol(self):
        """A peer's FIN gives a non-half-closeable protocol connectionLost; both sides finish."""
        client, server, pump = self.pair()
        mine = Recorder()
        client.open_stream(mine).loseConnection()
        pump.flush()
        [(_, theirs)] = self.accepted
        theirs.lost.trap(ConnectionDone)
        mine.lost.trap(ConnectionDone)
        self.assertEqual((client.streams_open, server.streams_open), (0, 0))

    def test_abort_sends_rst(self):
        """abortConnection resets the stream on both ends."""
        client, server, pump = self.pair()
        mine = Recorder()
        stream = client.open_stream(mine)
        pump.flush()
        stream.abortConnection()
        pump.flush()
        [(_, theirs)] = self.accepted
        mine.lost.trap(ConnectionAborted)
        theirs.lost.trap(ConnectionLost)
        self.assertIn("reset", str(theirs.lost.value))
        self.assertEqual(server.streams_open, 0)

    def test_raising_protocol_resets(self):
        """A protocol raising in dataReceived gets its stream reset, and the peer hears RST."""
        client, server, pump = self.pair(server_protocol=Raiser)
        mine = Recorder()
        client.open_stream(mine).write(b"x")
        pump.flush()
        [(_, theirs)] = self.accepted
        theirs.lost.trap(ValueError)
        mine.lost.trap(ConnectionLost)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)

    def test_close_timeout_resets(self):
        """A stream whose peer never sends FIN is reset after stream_close_timeout."""
        client, server, pump = self.pair(
            server_protocol=HalfCloser, stream_close_timeout=5
        )
        mine = Recorder()
        client.open_stream(mine).loseConnection()
        pump.flush()
        [(_, theirs)] = self.accepted
        self.assertTrue(theirs.read_lost)
        self.assertIsNone(mine.lost)
        self.clock.advance(5)
        pump.flush()
        mine.lost.trap(ConnectionDone)
        theirs.lost.trap(ConnectionLost)

    def test_unknown_stream_ignored(self):
        """Frames for a stream that does not exist are ignored, Data drained."""
        session, transport = self.raw_session()
        session.dataReceived(
            frame(TYPE_DATA, 0, 9, 4, b"junk") + frame(TYPE_WINDOW_UPDATE, 0, 9, 5)
        )
        self.assertEqual(transport.value(), b"")
        self.assertFalse(transport.disconnecting)


class FlowControlTests(_Base):
    """Windows, producers and backpressure."""

    def test_stalled_stream_does_not_block_others(self):
        """A paused stream stops its sender at the initial 256 KiB window
        (it passed nothing on, so it never granted more) while another
        stream moves 8 MiB."""
        client, server, pump = self.pair(server_protocol=Pauser)
        producer = FakeProducer()
        stalled = client.open_stream(Recorder())
        stalled.registerProducer(producer, True)
        chunk = b"s" * 65536
        written = 0
        for _ in range(200):
            if producer.paused:
                break
            stalled.write(chunk)
            written += len(chunk)
            pump.flush()
        self.assertTrue(producer.paused)
        [(server_stalled, stalled_sink)] = self.accepted
        self.assertEqual(server_stalled.receive_buffered, INITIAL_WINDOW)
        self.assertEqual(stalled_sink.received, b"")
        self.assertEqual(stalled.send_window, 0)
        self.assertLessEqual(stalled.send_buffered, len(chunk))

        moving = client.open_stream(Recorder())
        pump.flush()
        server_moving, sink = self.accepted[1]
        server_moving.resumeProducing()  # Pauser paused it in connectionMade
        payload = bytes(range(256)) * 4096
        for _ in range(8):
            moving.write(payload)
            pump.flush()
            self.assertLessEqual(server_stalled.receive_buffered, INITIAL_WINDOW)
        self.assertEqual(sink.received, payload * 8)
        self.assertTrue(producer.paused)

        server_stalled.resumeProducing()
        pump.flush()
        self.assertFalse(producer.paused)
        self.assertEqual(
            (server_stalled.receive_buffered, stalled.send_buffered), (0, 0)
        )
        self.assertEqual(stalled_sink.received, b"s" * written)

    def test_fin_waits_behind_blocked_data(self):
        """loseConnection on a window-blocked stream sends FIN only after the data."""
        client, server, pump = self.pair(
            server_protocol=Pauser, max_window=INITIAL_WINDOW
        )
        mine = Recorder()
        stream = client.open_stream(mine)
        stream.write(b"z" * (INITIAL_WINDOW + 1000))
        stream.loseConnection()
        pump.flush()
        [(server_stream, theirs)] = self.accepted
        self.assertEqual(stream.send_buffered, 1000)
        self.assertIsNone(theirs.lost)
        server_stream.resumeProducing()
        pump.flush()
        self.assertEqual(len(theirs.received), INITIAL_WINDOW + 1000)
        theirs.lost.trap(ConnectionDone)
        mine.lost.trap(ConnectionDone)

    def test_session_pause_pauses_stream_producers(self):
        """A paused session transport pauses stream producers and holds data until resumed."""
        session, transport = self.raw_session(is_client=True)
        stream = session.open_stream(Recorder())
        producer = FakeProducer()
        stream.registerProducer(producer, True)
        headers(transport)
        session.pauseProducing()
        self.assertTrue(producer.paused)
        stream.write(b"held")
        self.assertEqual((transport.value(), stream.send_buffered), (b"", 4))
        session.resumeProducing()
        self.assertEqual(headers(transport), [Header(TYPE_DATA, 0, 1, 4)])
        self.assertFalse(producer.paused)

    def test_lose_connection_with_paused_producer(self):
        """loseConnection completes although a paused streaming producer is registered."""
        client, server, pump = self.pair()
        mine = Recorder()
        stream = client.open_stream(mine)
        producer = FakeProducer()
        stream.registerProducer(producer, True)
        client.pauseProducing()
        stream.write(b"last words")
        stream.loseConnection()
        client.resumeProducing()
        pump.flush()
        [(_, theirs)] = self.accepted
        self.assertEqual(theirs.received, b"last words")
        mine.lost.trap(ConnectionDone)
        self.assertTrue(producer.stopped)

    def test_window_exceeded_is_protocol_error(self):
        """Data beyond the advertised window is answered with GoAway(1) and a close."""
        session, transport = self.raw_session(accept_stream=lambda s: Pauser())
        closed = session.when_closed()
        session.dataReceived(
            frame(TYPE_WINDOW_UPDATE, FLAG_SYN, 1, 0)
            + frame(TYPE_DATA, 0, 1, INITIAL_WINDOW, b"a" * INITIAL_WINDOW)
        )
        self.assertFalse(transport.disconnecting)
        session.dataReceived(frame(TYPE_DATA, 0, 1, 1, b"a"))
        self.assertEqual(headers(transport)[-1], Header(TYPE_GO_AWAY, 0, 0, 1))
        self.assertTrue(transport.disconnecting)
        self.assertIn("receive window", str(self.successResultOf(closed)))

    def test_pull_producer(self):
        """A non-streaming producer is asked for more after its data went out."""
        session, transport = self.raw_session(is_client=True)
        stream = session.open_stream(Recorder())
        calls = []

        class Pull:
            def resumeProducing(self):
                calls.append(1)
                if len(calls) < 3:
                    stream.write(b"p")
                else:
                    stream.unregisterProducer()

            def stopProducing(self):
                pass

        stream.registerProducer(Pull(), False)
        self.clock.advance(0)
        self.clock.advance(0)
        self.assertEqual(len(calls), 3)
        self.assertEqual([h.length for h in headers(transport)[1:]], [1, 1])


class SessionLifecycleTests(_Base):
    """Keepalive, GoAway, protocol errors, timeouts and the end of a session."""

    def test_ping_answered(self):
        """A Ping SYN is answered at once with a Ping ACK carrying the same opaque value."""
        session, transport = self.raw_session()
        session.dataReceived(frame(TYPE_PING, FLAG_SYN, 0, 0xDEADBEEF))
        self.assertEqual(
            headers(transport), [Header(TYPE_PING, FLAG_ACK, 0, 0xDEADBEEF)]
        )

    def test_keepalive_acked(self):
        """Our Pings go out every keepalive_interval and ACKs keep the session alive."""
        client, server, pump = self.pair(keepalive_interval=5)
        closed = client.when_closed()
        for _ in range(3):
            self.clock.advance(5)
            pump.flush()
        self.clock.advance(4.9)  # no new Ping yet and no timeout pending
        self.assertNoResult(closed)
        self.assertEqual(client._keepalive.ping_id, 3)

    def test_keepalive_timeout(self):
        """Without a Ping ACK within keepalive_timeout the session closes and streams end."""
        session, transport = self.raw_session(is_client=True, keepalive_interval=30)
        closed = session.when_closed()
        proto = Recorder()
        session.open_stream(proto)
        session.dataReceived(frame(TYPE_WINDOW_UPDATE, FLAG_ACK, 1, 0))
        headers(transport)
        self.clock.advance(30)
        self.assertEqual(headers(transport), [Header(TYPE_PING, FLAG_SYN, 0, 1)])
        self.clock.advance(9.9)
        self.assertNoResult(closed)
        self.clock.advance(0.1)
        self.assertIn("keepalive timeout", str(self.successResultOf(closed)))
        self.assertTrue(transport.disconnected)  # aborted
        proto.lost.trap(ConnectionLost)
        self.assertIn("keepalive timeout", str(proto.lost.value))
        self.assertRaises(SessionClosed, session.open_stream, Recorder())

    def test_go_away_normal(self):
        """After the peer's GoAway(0) open_stream raises, existing streams keep working."""
        client, server, pump = self.pair()
        mine = Recorder()
        stream = client.open_stream(mine)
        pump.flush()
        server.go_away()
        pump.flush()
        self.assertRaises(GoAwayReceived, client.open_stream, Recorder())
        stream.write(b"still here")
        pump.flush()
        self.assertEqual(self.accepted[0][1].received, b"still here")

    def test_syn_after_local_go_away_is_rst(self):
        """A session that sent GoAway refuses new streams with RST."""
        session, transport = self.raw_session(accept_stream=lambda s: Recorder())
        session.go_away()
        session.dataReceived(frame(TYPE_WINDOW_UPDATE, FLAG_SYN, 1, 0))
        self.assertEqual(
            headers(transport),
            [Header(TYPE_GO_AWAY, 0, 0, 0), Header(TYPE_WINDOW_UPDATE, FLAG_RST, 1, 0)],
        )

    def test_go_away_error_ends_session(self):
        """GoAway(1) from the peer ends the session and its streams."""
        session, transport = self.raw_session(accept_stream=lambda s: Recorder())
        closed = session.when_closed()
        session.dataReceived(frame(TYPE_WINDOW_UPDATE, FLAG_SYN, 1, 0))
        session.dataReceived(frame(TYPE_GO_AWAY, 0, 0, 1))
        reason = self.successResultOf(closed)
        self.assertIsInstance(reason, SessionError)
        self.assertIn("protocol error", str(reason))
        self.assertTrue(transport.disconnecting)
        self.assertEqual(session.streams_open, 0)

    def test_duplicate_syn(self):
        """A second SYN for a live stream id is a protocol error: GoAway(1) and close."""
        session, transport = self.raw_session(accept_stream=lambda s: Recorder())
        closed = session.when_closed()
        syn = frame(TYPE_WINDOW_UPDATE, FLAG_SYN, 1, 0)
        session.dataReceived(syn + syn)
        self.assertEqual(headers(transport)[-1], Header(TYPE_GO_AWAY, 0, 0, 1))
        self.assertIn("duplicate SYN", str(self.successResultOf(closed)))

    def test_bad_version(self):
        """A frame with version 1 gets GoAway(1), after the frames before it were handled."""
        session, transport = self.raw_session()
        closed = session.when_closed()
        session.dataReceived(frame(TYPE_PING, FLAG_SYN, 0, 5) + b"\x01" + b"\x00" * 11)
        self.assertEqual(
            headers(transport),
            [Header(TYPE_PING, FLAG_ACK, 0, 5), Header(TYPE_GO_AWAY, 0, 0, 1)],
        )
        self.assertIn("version", str(self.successResultOf(closed)))
        self.assertTrue(transport.disconnecting)

    def test_stream_open_timeout(self):
        """A SYN not ACKed within stream_open_timeout closes the whole session."""
        session, transport = self.raw_session(is_client=True, stream_open_timeout=75)
        closed = session.when_closed()
        proto = Recorder()
        session.open_stream(proto)
        self.clock.advance(74)
        self.assertNoResult(closed)
        self.clock.advance(1)
        self.assertIn("open timeout", str(self.successResultOf(closed)))
        proto.lost.trap(ConnectionLost)
        self.assertTrue(transport.disconnected)

    def test_transport_lost_ends_streams(self):
        """Losing the transport gives every stream connectionLost once, and fires when_closed."""
        client, server, pump = self.pair()
        mine = [Recorder(), Recorder()]
        for p in mine:
            client.open_stream(p)
        pump.flush()
        closed = server.when_closed()
        client.transport.loseConnection()
        pump.flush()
        for p in mine + [p for _, p in self.accepted]:
            p.lost.trap(ConnectionLost)
            self.assertEqual(p.lost_count, 1)
        self.assertIsInstance(self.successResultOf(closed), ConnectionDone)
        self.assertIsInstance(
            self.successResultOf(server.when_closed()), ConnectionDone
        )

    def test_close(self):
        """close() ends the streams, loses the transport and fires when_closed with ConnectionDone."""
        session, transport = self.raw_session(is_client=True)
        proto = Recorder()
        session.open_stream(proto)
        session.close()
        self.assertIsInstance(
            self.successResultOf(session.when_closed()), ConnectionDone
        )
        self.assertTrue(transport.disconnecting)
        self.assertIsNone(transport.producer)
        proto.lost.trap(ConnectionLost)


class ReplayTests(_Base):
    """Feed what a real frpc 0.70 sent into a server session."""

    def test_capture_replay(self):
        """Streams 1..9 are accepted with the captured bytes; ACKs grant no
        credit beyond the initial window (frp's would carry 6029312)."""
        messages = json.loads(DATA.child("messages.json").getContent())
        expected = {
            s["stream_id"]: DATA.preauthChild(s["demuxed_files"]["c2s"]).getContent()
            for s in messages["connections"][0]["streams"]
        }
        accepted = {}

        def accept(stream):
            accepted[stream.stream_id] = Recorder()
            return accepted[stream.stream_id]

        session, transport = self.raw_session(accept_stream=accept)
        raw = DATA.child("streams").child("conn-01.c2s.bin").getContent()
        for i in range(0, len(raw), 777):
            session.dataReceived(raw[i : i + 777])
        self.assertEqual(sorted(accepted), [1, 3, 5, 7, 9])
        self.assertEqual({k: p.received for k, p in accepted.items()}, expected)
        sent = headers(transport)
        acks = [h for h in sent if h.flags & FLAG_ACK]
        self.assertEqual(
            acks, [Header(TYPE_WINDOW_UPDATE, FLAG_ACK, i, 0) for i in (1, 3, 5, 7, 9)]
        )
        fins = [h.stream_id for h in sent if h.flags & FLAG_FIN]
        self.assertEqual(
            fins, [3, 5, 7]
        )  # frpc half-closed these; our plain Recorders close too
        self.assertFalse(transport.disconnecting)
