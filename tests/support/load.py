"""
Load for the system tests: users and producers that push as fast as a
transport accepts and never read, a check that they all stalled (nothing
downstream buffered), polls of another process's state, and the echo
check that a tunnel still works meanwhile.
"""

import hashlib
import time

from twisted.internet import defer, reactor
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Protocol
from twisted.internet.task import deferLater
from zope.interface import implementer

from .harness import connect_user, within

KIB = 1024
MIB = 1024 * KIB

#: The echo check's payload: 256 KiB in a fixed pseudo-random pattern.
ECHO_PAYLOAD = hashlib.shake_256(b"labrelay abuse echo").digest(256 * KIB)
#: What a pusher writes, over and over.
_BLOCK = hashlib.shake_256(b"labrelay abuse bulk").digest(64 * KIB)


async def poll_until(predicate, describe, bound, interval=0.1):
    """Poll the measured condition *predicate* every *interval* seconds for
    at most *bound* seconds (there is no event for another process's fd
    count); fail with *describe()* if it never holds."""
    deadline = time.monotonic() + bound
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {bound}s: {describe()}")
        await deferLater(reactor, interval, lambda: None)


def close_all(peers):
    """Abort every connected protocol of *peers* (each with a ``closed``
    Deferred); a Deferred firing once all are closed."""
    connected = [p for p in peers if getattr(p, "transport", None) is not None]
    for p in connected:
        if not p.closed.called:
            p.transport.abortConnection()
    return within(defer.gatherResults([p.closed for p in connected]), 10)


async def echo_check(testcase, port):
    """Send ECHO_PAYLOAD through the tcp tunnel and assert it comes back
    byte-exact; return the round trip in seconds."""
    started = time.monotonic()
    user = await connect_user(testcase, port)
    user.transport.write(ECHO_PAYLOAD)
    got = await within(user.wait_for(len(ECHO_PAYLOAD)), 20)
    testcase.assertEqual(
        got, ECHO_PAYLOAD, "the tunnel did not echo byte-exact during the abuse"
    )
    user.transport.loseConnection()
    await within(user.closed, 10)
    return time.monotonic() - started


@implementer(IPushProducer)
class Pusher:
    """Writes up to *limit* bytes of a pattern to *transport* as fast as it
    accepts them: a streaming producer, so this process holds at most about
    one transport buffer."""

    def __init__(self, transport, limit):
        self.transport = transport
        self.limit = limit
        self.sent = 0
        self.paused = False
        self.stopped = False

    def start(self):
        self.transport.registerProducer(self, True)
        self.resumeProducing()

    def resumeProducing(self):
        self.paused = False
        while not self.paused and not self.stopped and self.sent < self.limit:
            self.transport.write(_BLOCK)
            self.sent += len(_BLOCK)

    def pauseProducing(self):
        self.paused = True

    def stopProducing(self):
        self.stopped = True


async def stalled(pushers, describe, checks=20, interval=0.05, bound=60):
    """Wait until every pusher is paused and none sends more for *checks*
    checks *interval* seconds apart; fail if one sends its whole limit
    (then something downstream buffered it).  Return the bytes sent."""
    deadline = time.monotonic() + bound
    still, last = 0, None
    while still < checks:
        done = [p for p in pushers if p.sent >= p.limit]
        if done:
            raise AssertionError(
                f"a sender wrote its whole {done[0].limit / MIB:.0f} MiB "
                f"although nobody read: the relay buffered it ({describe()})"
            )
        if time.monotonic() > deadline:
            raise AssertionError(
                f"the senders never stayed paused in {bound}s ({describe()})"
            )
        await deferLater(reactor, interval, lambda: None)
        total = sum(p.sent for p in pushers)
        if all(p.paused for p in pushers) and total == last:
            still += 1
        else:
            still = 0
        last = total
    return last


class PushingUser(Protocol):
    """A user of a tunnel that, when told, pushes data and never reads."""

    def __init__(self, limit):
        self.limit = limit
        self.pusher = None
        self.closed = defer.Deferred()

    def connectionMade(self):
        self.transport.pauseProducing()
        self.pusher = Pusher(self.transport, self.limit)

    def connectionLost(self, reason):
        self.pusher.stopped = True
        self.closed.callback(None)
