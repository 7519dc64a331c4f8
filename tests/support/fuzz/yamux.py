"""
yamux as fuzz targets: the frame parser, and a server-side session whose
streams echo, on a memory transport and a Clock.
"""

from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from labrelay import FRP_VERSION
from labrelay.mux.frames import (
    FLAG_ACK,
    FLAG_FIN,
    FLAG_SYN,
    HEADER_SIZE,
    INITIAL_WINDOW,
    TYPE_DATA,
    TYPE_GO_AWAY,
    TYPE_PING,
    TYPE_WINDOW_UPDATE,
    FrameError,
    FrameParser,
    encode_header,
)
from labrelay.mux.session import YamuxSession
from labrelay.protocol import messages
from labrelay.protocol.framing import encode_message

from .. import vectors
from .core import Target, Wire, bound, chunked, label

#: Bytes a session may write to a transport that stopped reading (a peer
#: that sends but never reads) beyond what it owed before the pause.
PAUSED_WRITE_ALLOWANCE = 4096


def yamux_corpus(direction: str) -> list:
    capture = vectors.stream_bytes(vectors.PLAIN_MUX, "conn-01", direction)
    login = encode_message(messages.Login(version=FRP_VERSION))
    handmade = b"".join(
        [
            encode_header(TYPE_WINDOW_UPDATE, FLAG_SYN, 1, 0),
            encode_header(TYPE_DATA, 0, 1, len(login)),
            login,
            encode_header(TYPE_PING, FLAG_SYN, 0, 7),
            encode_header(TYPE_DATA, FLAG_FIN, 1, 0),
            encode_header(TYPE_GO_AWAY, 0, 0, 0),
        ]
    )
    return [capture, capture[:600], handmade]


YAMUX_TOKENS = tuple(
    encode_header(t, f, s, n)
    for t, f, s, n in (
        (TYPE_WINDOW_UPDATE, FLAG_SYN, 1, 0),
        (TYPE_WINDOW_UPDATE, FLAG_SYN, 3, 0xFFFFFFFF),
        (TYPE_DATA, 0, 1, 8),
        (TYPE_DATA, FLAG_FIN, 1, 0),
        (TYPE_PING, FLAG_SYN, 0, 1),
        (TYPE_PING, FLAG_ACK, 0, 1),
        (TYPE_GO_AWAY, 0, 0, 1),
        (TYPE_WINDOW_UPDATE, 0x8, 1, 0),
        (TYPE_DATA, 0, 2, INITIAL_WINDOW + 1),
    )
)


class YamuxFramesTarget(Target):
    """FrameParser: only FrameError, and never more than one frame held."""

    name = "yamux-frames"
    tokens = YAMUX_TOKENS

    def corpus(self):
        return yamux_corpus("c2s") + yamux_corpus("s2c")

    def run(self, data, cuts):
        parser = FrameParser(max_data_length=INITIAL_WINDOW)
        count = 0
        try:
            for piece in chunked(data, cuts):
                count += len(parser.feed(piece))
                bound(
                    parser.buffered < HEADER_SIZE + INITIAL_WINDOW,
                    f"frame parser holds {parser.buffered} bytes",
                )
        except FrameError as e:
            return label(e)
        return "ok, partial frame" if parser.buffered else "ok"


class Echo(Protocol):
    """A stream protocol that echoes with backpressure: the stream is its
    own producer, so a full send buffer stops delivery (and credit)."""

    def connectionMade(self):
        self.transport.registerProducer(self.transport, True)

    def dataReceived(self, data):
        self.transport.write(data)


class YamuxSessionTarget(Target):
    """
    A server-side YamuxSession whose streams echo, on a memory transport
    and a Clock.  Input bit 0 of the first byte makes the peer stop reading
    after 256 bytes (the transport pauses the session); in strict mode the
    session must then write at most :data:`PAUSED_WRITE_ALLOWANCE` more.
    """

    name = "yamux-session"
    tokens = YAMUX_TOKENS

    def __init__(self, strict_paused_writes: bool = True):
        self.strict_paused_writes = strict_paused_writes

    def corpus(self):
        return [bytes([mode]) + c for c in yamux_corpus("c2s") for mode in (0, 1)]

    def run(self, data, cuts):
        if not data:
            return "empty"
        window = INITIAL_WINDOW
        clock = Clock()
        session = YamuxSession(
            is_client=False,
            clock=clock,
            accept_stream=lambda stream: Echo(),
            max_window=window,
            accept_backlog=8,
        )
        wire = Wire(pause_after=256 if data[0] & 1 else None)
        session.makeConnection(wire)
        closed = []
        session.when_closed().addCallback(closed.append)
        for piece in chunked(data[1:], cuts):
            if wire.disconnecting:
                break
            session.dataReceived(piece)
            clock.advance(3)
            held = session._parser.buffered
            bound(held < HEADER_SIZE + window, f"session parser holds {held} bytes")
            for stream in list(session._streams.values()):
                bound(
                    stream.receive_buffered <= window,
                    f"stream {stream.stream_id} holds "
                    f"{stream.receive_buffered} received bytes",
                )
                bound(
                    stream.send_buffered <= window,
                    f"stream {stream.stream_id} holds "
                    f"{stream.send_buffered} bytes to send",
                )
            paused = wire.written_while_paused
            bound(
                not self.strict_paused_writes
                or paused is None
                or paused <= PAUSED_WRITE_ALLOWANCE,
                f"session wrote {paused} bytes to a transport whose peer does not read",
            )
        state = (
            ("closed: " + label(closed[0]))
            if closed
            else f"open, {min(session.streams_open, 3)}+ streams"
        )
        session.connectionLost(Failure(ConnectionDone()))
        bound(
            clock.getDelayedCalls() == [],
            f"delayed calls left: {clock.getDelayedCalls()}",
        )
        return state
