"""
The frames a yamux session answers one read with leave in one write, in
order; a GoAway and a closing session do not lose what was gathered.
"""

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from labrelay.mux.frames import (
    FLAG_ACK,
    FLAG_SYN,
    GO_AWAY_PROTOCOL_ERROR,
    TYPE_DATA,
    TYPE_GO_AWAY,
    TYPE_PING,
    TYPE_WINDOW_UPDATE,
    FrameParser,
)
from labrelay.mux.outlet import GATHER_LIMIT, FrameOutlet
from labrelay.mux.session import YamuxSession

from ..support.yamux import Recorder, frame


class CountingTransport(StringTransport):
    """A StringTransport that also keeps each write apart."""

    def __init__(self):
        super().__init__()
        self.writes = []

    def write(self, data):
        self.writes.append(data)
        super().write(data)


def frames_of(data):
    return [
        (f.header.type, f.header.flags, f.header.stream_id, f.header.length)
        for f in FrameParser().feed(data)
    ]


class Answerer(Recorder):
    """Writes a reply on its stream for every chunk it gets."""

    def dataReceived(self, data):
        super().dataReceived(data)
        self.transport.write(b"re:" + data)


class SessionGatheringTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.accepted = []

        def accept(stream):
            protocol = Answerer()
            self.accepted.append(protocol)
            return protocol

        self.session = YamuxSession(
            is_client=False,
            clock=self.clock,
            accept_stream=accept,
            keepalive_interval=0,
        )
        self.transport = CountingTransport()
        self.session.makeConnection(self.transport)
        self.addCleanup(self.session.close)

    def test_one_read_one_write(self):
        """
        One read bringing two SYNs with data and a Ping gets its two ACKs,
        two replies and the Ping answer back in a single write, in the
        order they were written.
        """
        self.session.dataReceived(
            frame(TYPE_DATA, FLAG_SYN, 1, 2, b"hi")
            + frame(TYPE_DATA, FLAG_SYN, 3, 3, b"you")
            + frame(TYPE_PING, FLAG_SYN, 0, 7)
        )
        self.assertEqual(len(self.transport.writes), 1)
        sent = frames_of(self.transport.writes[0])
        self.assertEqual(
            sent,
            [
                (TYPE_WINDOW_UPDATE, FLAG_ACK, 1, 0),
                (TYPE_DATA, 0, 1, 5),
                (TYPE_WINDOW_UPDATE, FLAG_ACK, 3, 0),
                (TYPE_DATA, 0, 3, 6),
                (TYPE_PING, FLAG_ACK, 0, 7),
            ],
        )
        self.assertEqual([p.received for p in self.accepted], [b"hi", b"you"])

    def test_writes_outside_a_read_leave_at_once(self):
        """A stream's write outside the session's read is not held back."""
        self.session.dataReceived(frame(TYPE_WINDOW_UPDATE, FLAG_SYN, 1, 0))
        self.transport.writes.clear()
        self.accepted[0].transport.write(b"now")
        self.assertEqual(
            frames_of(b"".join(self.transport.writes)), [(TYPE_DATA, 0, 1, 3)]
        )

    def test_protocol_error_sends_gathered_then_go_away(self):
        """
        A bad frame after good ones: the answers to the good ones, then the
        GoAway, all reach the transport before it is closed.
        """
        self.session.dataReceived(
            frame(TYPE_DATA, FLAG_SYN, 1, 2, b"hi") + frame(TYPE_DATA, FLAG_SYN, 2, 0)
        )
        sent = frames_of(self.transport.value())
        self.assertEqual(
            sent,
            [
                (TYPE_WINDOW_UPDATE, FLAG_ACK, 1, 0),
                (TYPE_DATA, 0, 1, 5),
                (TYPE_GO_AWAY, 0, 0, GO_AWAY_PROTOCOL_ERROR),
            ],
        )
        self.assertTrue(self.transport.disconnecting)


class OutletGatheringTests(SynchronousTestCase):
    def outlet(self):
        outlet = FrameOutlet(on_flood=lambda: None)
        outlet.transport = CountingTransport()
        return outlet

    def test_nested_gathering_writes_once_at_the_outer_release(self):
        outlet = self.outlet()
        outlet.gather()
        outlet.write_frame(TYPE_PING, FLAG_ACK, 0, 1)
        outlet.gather()
        outlet.write_frame(TYPE_PING, FLAG_ACK, 0, 2)
        outlet.release()
        self.assertEqual(outlet.transport.writes, [])
        outlet.release()
        self.assertEqual(len(outlet.transport.writes), 1)
        self.assertEqual(
            frames_of(outlet.transport.writes[0]),
            [(TYPE_PING, FLAG_ACK, 0, 1), (TYPE_PING, FLAG_ACK, 0, 2)],
        )

    def test_gathering_is_bounded(self):
        """Past GATHER_LIMIT bytes the gathered frames are written anyway."""
        outlet = self.outlet()
        outlet.gather()
        chunk = b"x" * (GATHER_LIMIT // 4)
        for _ in range(4):
            outlet.write_frame(TYPE_DATA, 0, 1, len(chunk), chunk)
        self.assertEqual(len(outlet.transport.writes), 1)
        outlet.write_frame(TYPE_DATA, 0, 1, 1, b"y")
        outlet.release()
        self.assertEqual(len(outlet.transport.writes), 2)
        self.assertEqual(len(frames_of(outlet.transport.value())), 5)

    def test_closed_outlet_drops_gathered(self):
        outlet = self.outlet()
        outlet.gather()
        outlet.write_frame(TYPE_PING, FLAG_ACK, 0, 1)
        outlet.close()
        outlet.release()
        self.assertEqual(outlet.transport.writes, [])
