"""
Helpers for yamux sessions in memory: stream protocols that record what
they get (or pause at once), a streaming producer that records its calls,
and frame bytes and headers.
"""

from twisted.internet import protocol
from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

from labrelay.mux.frames import FrameParser, encode_header


class Recorder(protocol.Protocol):
    """Collects what a stream delivers; checks connectionLost comes once."""

    def __init__(self):
        self.chunks = []
        self.lost = None
        self.lost_count = 0

    @property
    def received(self):
        return b"".join(self.chunks)

    def dataReceived(self, data):
        self.chunks.append(data)

    def connectionLost(self, reason):
        self.lost_count += 1
        self.lost = reason


class Pauser(Recorder):
    """A Recorder that pauses its stream as soon as it is connected."""

    def connectionMade(self):
        self.transport.pauseProducing()


@implementer(IPushProducer)
class FakeProducer:
    """A streaming producer that records the calls it gets."""

    def __init__(self):
        self.paused = False
        self.stopped = False

    def pauseProducing(self):
        self.paused = True

    def resumeProducing(self):
        self.paused = False

    def stopProducing(self):
        self.stopped = True


def frame(frame_type, flags, stream_id, length, payload=b""):
    return encode_header(frame_type, flags, stream_id, length) + payload


def headers(transport):
    """The frame headers a StringTransport got, clearing it."""
    frames = FrameParser().feed(transport.value())
    transport.clear()
    return [f.header for f in frames]
