# -*- test-case-name: tests.unit.test_yamux_session,tests.integration.test_yamux_session -*-
"""
The named states of a :class:`~labrelay.mux.stream.YamuxStream`.

Each enum stands for a cluster of flags whose combinations are not all
possible: the SYN/accept handshake, each half of the FIN exchange, and how
the registered producer is driven.  Whether input is discarded, the protocol
was told ``connectionLost`` and the stream left its session stay plain
flags: they are independent of these and of each other.
"""

from enum import Enum


class Handshake(Enum):
    """How far a stream is from having a protocol connected to it."""

    UNATTACHED = "unattached"  # no protocol yet, no accept Deferred pending
    ACCEPTING = "accepting"  # opened by the peer; the accept Deferred has not fired
    ATTACHED = "attached"  # the protocol is connected (it may have gone since)


class Sending(Enum):
    """Our half of the FIN exchange."""

    OPEN = "open"  # the protocol may write
    FIN_QUEUED = "fin-queued"  # no more writes; FIN goes out after the buffered data
    FIN_SENT = "fin-sent"


class Receiving(Enum):
    """The peer's half of the FIN exchange."""

    OPEN = "open"
    FIN_RECEIVED = "fin-received"  # data buffered before it may still be undelivered
    FIN_DELIVERED = "fin-delivered"  # the protocol was told (or it was moot)


class ProducerMode(Enum):
    """How the registered producer (if any) is driven."""

    PULL = "pull"  # resumeProducing() once per time the send buffer drains
    STREAMING = "streaming"
    PAUSED = "paused"  # streaming, and paused by us
