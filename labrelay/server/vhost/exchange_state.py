# -*- test-case-name: tests.unit.test_vhost,tests.integration.test_vhost,tests.integration.test_vhost_reuse -*-
"""
The named states of an :class:`~labrelay.server.vhost.exchange.HttpExchange`.

Each enum stands for a cluster of flags whose combinations are not all
possible: where the exchange is in its life, how far the response has
come, and what the exchange may still do with its work connection.
Whether the request has been read to its end stays a plain flag: a
backend may answer before it has the whole request body, so it is
independent of these.
"""

from enum import Enum


class Stage(Enum):
    """The exchange as a whole."""

    WAITING = "waiting"  # open_work() has not given a work connection yet
    FORWARDING = "forwarding"  # a work connection carries the request
    ENDED = "ended"  # finished, failed, cut, switched protocols, or the user left


class Response(Enum):
    """How far the backend's response has been relayed to the user."""

    AWAITED = "awaited"  # no head yet (the head timer runs once the request is in)
    STREAMING = "streaming"  # the head went to the user; the body follows
    COMPLETE = "complete"


class Work(Enum):
    """What the exchange may still do with its work connection.  In the
    holding states the proxy counts the exchange as an open connection;
    the last three are the ways of letting it go."""

    NONE = "none"  # no work connection (yet, or ever)
    OPEN = "open"  # held, both ways
    INPUT_ENDED = (
        "input-ended"  # held; the backend sent EOF, the request may still go out
    )
    RELEASED = "released"  # back to the proxy, idle for its next request
    HANDED_OVER = "handed-over"  # carried on by a raw Splice after a protocol switch
    CLOSED = "closed"  # closed by the exchange, or lost


#: the states in which the exchange holds its work connection (and writes
#: the request to it)
HOLDING = frozenset((Work.OPEN, Work.INPUT_ENDED))
