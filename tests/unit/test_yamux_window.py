"""
Tests for yamux receive windows: credit only for bytes passed on, windows
that grow only as data flows, and the process-wide
:class:`~labrelay.mux.budget.BufferBudget` (labrelay.mux.budget,
labrelay.mux.stream), in memory.
"""

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase

from labrelay.config import ConfigError, parse_client_config, parse_server_config
from labrelay.mux.budget import FLOOR, BufferBudget
from labrelay.mux.frames import (
    FLAG_ACK,
    FLAG_SYN,
    INITIAL_WINDOW,
    TYPE_DATA,
    TYPE_WINDOW_UPDATE,
    Header,
)
from labrelay.mux.session import YamuxSession

from ..support.memory_server import MemoryServerCase
from ..support.yamux import FakeProducer, Pauser, Recorder, frame, headers

KIB = 1024
MIB = 1024 * KIB
MAX_WINDOW = 6 * MIB
CHUNK = b"w" * (64 * KIB)


class FillingConsumer(Recorder):
    """Like a protocol whose write to a TCP transport passed the transport's
    high-water mark: every delivery pauses its stream."""

    def dataReceived(self, data):
        super().dataReceived(data)
        self.transport.pauseProducing()


def commitment(stream) -> int:
    """What the peer may make this stream hold: window plus held bytes."""
    return stream.recv_window + stream.receive_buffered


class BudgetWindowTests(SynchronousTestCase):
    """BufferBudget.window: the next window of one stream."""

    def test_grows_by_doubling_up_to_the_maximum(self):
        budget = BufferBudget()
        self.assertEqual(
            budget.window(INITIAL_WINDOW, 0, MAX_WINDOW, True), 2 * INITIAL_WINDOW
        )
        self.assertEqual(budget.window(4 * MIB, 0, MAX_WINDOW, True), MAX_WINDOW)
        self.assertEqual(budget.window(MAX_WINDOW, 0, MAX_WINDOW, True), MAX_WINDOW)

    def test_no_growth_unless_asked(self):
        budget = BufferBudget()
        self.assertEqual(
            budget.window(INITIAL_WINDOW, 0, MAX_WINDOW, False), INITIAL_WINDOW
        )

    def test_growth_only_within_the_limit(self):
        budget = BufferBudget(2 * MIB)
        budget.used = 1 * MIB + INITIAL_WINDOW  # ours: INITIAL_WINDOW
        self.assertEqual(
            budget.window(INITIAL_WINDOW, INITIAL_WINDOW, MAX_WINDOW, True),
            2 * INITIAL_WINDOW,
        )
        budget.used = 2 * MIB - INITIAL_WINDOW // 2
        self.assertEqual(
            budget.window(INITIAL_WINDOW, INITIAL_WINDOW, MAX_WINDOW, True),
            INITIAL_WINDOW,
        )

    def test_halves_when_over_never_below_the_floor(self):
        budget = BufferBudget(8 * MIB)
        budget.used = 10 * MIB  # ours: 6 MiB, the others' 4 MiB
        self.assertEqual(
            budget.window(MAX_WINDOW, MAX_WINDOW, MAX_WINDOW, True), 3 * MIB
        )
        budget.used = 100 * MIB
        self.assertEqual(budget.window(MAX_WINDOW, MAX_WINDOW, MAX_WINDOW, True), FLOOR)
        self.assertEqual(budget.window(FLOOR, FLOOR, MAX_WINDOW, True), FLOOR)


class _Sessions(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()

    def raw_session(self, accept, budget=None):
        session = YamuxSession(
            is_client=False,
            clock=self.clock,
            accept_stream=accept,
            keepalive_interval=0,
            budget=budget,
        )
        transport = StringTransport()
        session.makeConnection(transport)
        self.addCleanup(session.close)
        return session, transport

    def pair(self, make_protocol, budget=None):
        """A client session and a server session (charging *budget*)
        joined by iosim; the server's accepted (stream, protocol) pairs
        are in ``self.accepted``."""
        self.accepted = []

        def accept(stream):
            p = make_protocol()
            self.accepted.append((stream, p))
            return p

        server = YamuxSession(
            is_client=False,
            clock=self.clock,
            accept_stream=accept,
            keepalive_interval=0,
            budget=budget,
        )
        client = YamuxSession(is_client=True, clock=self.clock, keepalive_interval=0)
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

    def stall(self, client, pump, count):
        """Open *count* streams whose server side never reads, each sent
        twice the initial window; return the server sides."""
        first = len(self.accepted)
        for _ in range(count):
            client.open_stream(Recorder()).write(b"s" * 2 * INITIAL_WINDOW)
        pump.flush()
        return [stream for stream, _ in self.accepted[first:]]

    def move(self, stream, pump, server_stream, total):
        """Write *total* bytes on *stream*, flushing after each chunk;
        return the largest commitment *server_stream* had meanwhile."""
        largest = commitment(server_stream)
        for _ in range(total // len(CHUNK)):
            stream.write(CHUNK)
            pump.flush()
            largest = max(largest, commitment(server_stream))
        return largest


class GrantTests(_Sessions):
    """Credit goes back only for bytes passed on."""

    def test_no_credit_while_the_consumer_is_full(self):
        """Bytes whose delivery filled the consumer up are credited only
        when it resumes (its buffer drained), not when received."""
        accepted = []

        def accept(stream):
            accepted.append(stream)
            return FillingConsumer()

        session, transport = self.raw_session(accept)
        payload = b"x" * (INITIAL_WINDOW - 16 * KIB)
        session.dataReceived(
            frame(TYPE_WINDOW_UPDATE, FLAG_SYN, 1, 0)
            + frame(TYPE_DATA, 0, 1, len(payload), payload)
        )
        self.assertEqual(
            headers(transport), [Header(TYPE_WINDOW_UPDATE, FLAG_ACK, 1, 0)]
        )
        [stream] = accepted
        self.assertEqual(stream.recv_window, 16 * KIB)
        stream.resumeProducing()
        [update] = headers(transport)
        self.assertEqual(
            (update.type, update.flags, update.stream_id), (TYPE_WINDOW_UPDATE, 0, 1)
        )
        self.assertGreaterEqual(update.length, len(payload))

    def test_credit_for_bytes_passed_on(self):
        """A reading stream grants as soon as half its window is owed."""
        session, transport = self.raw_session(lambda stream: Recorder())
        payload = b"x" * (INITIAL_WINDOW // 2)
        session.dataReceived(
            frame(TYPE_WINDOW_UPDATE, FLAG_SYN, 1, 0)
            + frame(TYPE_DATA, 0, 1, len(payload), payload)
        )
        self.assertEqual(
            [(h.flags, h.length > 0) for h in headers(transport)],
            [(FLAG_ACK, False), (0, True)],
        )

    def test_window_grows_only_as_data_flows(self):
        """A stream that moves data reaches the 6 MiB maximum; one that is
        never read stays at the initial window."""
        client, server, pump = self.pair(Recorder)
        stream = client.open_stream(Recorder())
        pump.flush()
        [(server_stream, sink)] = self.accepted
        self.assertEqual(commitment(server_stream), INITIAL_WINDOW)
        largest = self.move(stream, pump, server_stream, 16 * MIB)
        self.assertEqual(len(sink.received), 16 * MIB)
        self.assertEqual(largest, MAX_WINDOW)

        client2, server2, pump2 = self.pair(Pauser)
        [stalled] = self.stall(client2, pump2, 1)
        self.assertEqual(commitment(stalled), INITIAL_WINDOW)
        self.assertEqual(stalled.receive_buffered, INITIAL_WINDOW)


class ProducerTests(_Sessions):
    """A stream that holds data back keeps its producer paused."""

    def test_producer_resumed_behind_our_back_is_paused_again(self):
        """A producer registered while the session's transport is full is
        paused; resumed by someone else (a splice resumes both sides), it
        is paused again by the next write instead of filling the stream's
        send buffer read after read."""
        session = YamuxSession(is_client=True, clock=self.clock, keepalive_interval=0)
        session.makeConnection(StringTransport())
        self.addCleanup(session.close)
        stream = session.open_stream(Recorder())
        session.pauseProducing()
        producer = FakeProducer()
        stream.registerProducer(producer, True)
        self.assertTrue(producer.paused)
        for _ in range(3):
            producer.resumeProducing()
            stream.write(CHUNK)
            self.assertTrue(producer.paused)
        self.assertEqual(stream.send_buffered, 3 * len(CHUNK))


class BudgetTests(_Sessions):
    """One budget shared by sessions bounds every stream's window."""

    def test_stalled_streams_hold_a_floor_and_others_still_move(self):
        """With the budget taken by stalled streams of one session, a
        reading stream of another session sharing the budget moves 4 MiB
        without its window growing past the initial one."""
        budget = BufferBudget(1 * MIB)
        client, server, pump = self.pair(Pauser, budget)
        stalled = self.stall(client, pump, 8)
        self.assertEqual([commitment(s) for s in stalled], [INITIAL_WINDOW] * 8)
        self.assertEqual(budget.used, 8 * INITIAL_WINDOW)

        client2, server2, pump2 = self.pair(Recorder, budget)
        stream = client2.open_stream(Recorder())
        pump2.flush()
        [(server_stream, sink)] = self.accepted
        largest = self.move(stream, pump2, server_stream, 4 * MIB)
        self.assertEqual(len(sink.received), 4 * MIB)
        self.assertLessEqual(largest, INITIAL_WINDOW)
        self.assertEqual(budget.used, 8 * INITIAL_WINDOW + commitment(server_stream))

    def test_window_shrinks_when_others_need_the_budget(self):
        """A stream grown to 6 MiB falls back when stalled streams take the
        budget, and grows again once they are gone."""
        budget = BufferBudget(8 * MIB)
        made = []

        def make():
            made.append(Recorder() if not made else Pauser())
            return made[-1]

        client, server, pump = self.pair(make, budget)
        stream = client.open_stream(Recorder())
        pump.flush()
        [(server_stream, sink)] = self.accepted
        self.assertEqual(self.move(stream, pump, server_stream, 16 * MIB), MAX_WINDOW)
        stalled = self.stall(client, pump, 12)
        self.move(stream, pump, server_stream, 16 * MIB)
        self.assertLessEqual(commitment(server_stream), 3 * MIB)
        self.assertLessEqual(budget.used, 8 * MIB)

        for s in stalled:
            s.abortConnection()
        pump.flush()
        self.assertEqual(self.move(stream, pump, server_stream, 16 * MIB), MAX_WINDOW)
        self.assertEqual(len(sink.received), 48 * MIB)

    def test_every_end_gives_the_budget_back(self):
        """Reset, close, discard and the end of the session leave nothing
        charged."""
        budget = BufferBudget(4 * MIB)
        client, server, pump = self.pair(Pauser, budget)
        stalled = self.stall(client, pump, 6)
        self.assertEqual(budget.used, 6 * INITIAL_WINDOW)
        stalled[0].abortConnection()
        stalled[1].loseConnection()  # drops what it held, keeps crediting
        pump.flush()
        self.assertEqual(
            budget.used, 4 * INITIAL_WINDOW + sum(commitment(s) for s in stalled[1:2])
        )
        server.close()
        pump.flush()
        self.assertEqual(budget.used, 0)


class ConfigTests(SynchronousTestCase):
    """max_buffered_bytes, on both sides."""

    def test_defaults_and_values(self):
        self.assertEqual(parse_server_config("[common]\n").max_buffered_bytes, 16 * MIB)
        self.assertEqual(parse_client_config("[common]\n").max_buffered_bytes, 16 * MIB)
        # (a relay on loopback: an empty token there is not warned about)
        for parse, where in (
            (parse_server_config, "bind_addr = 127.0.0.1\n"),
            (parse_client_config, ""),
        ):
            config = parse(f"[common]\n{where}max_buffered_bytes = 0\n")
            self.assertEqual((config.max_buffered_bytes, config.warnings), (0, ()))

    def test_negative_or_not_a_number_is_refused(self):
        for parse in (parse_server_config, parse_client_config):
            for value in ("-1", "lots"):
                with self.assertRaises(ConfigError) as caught:
                    parse(f"[common]\nmax_buffered_bytes = {value}\n")
                self.assertIn("max_buffered_bytes", str(caught.exception))


class ReloadTests(MemoryServerCase):
    """The server's budget takes a reloaded max_buffered_bytes at once."""

    def test_reload_sets_the_limit(self):
        budget = self.server.buffer_budget
        self.assertEqual(budget.limit, 16 * MIB)
        self.reload("max_buffered_bytes = 1048576\n")
        self.assertIs(self.server.buffer_budget, budget)
        self.assertEqual(budget.limit, 1 * MIB)
