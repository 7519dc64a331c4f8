# -*- test-case-name: tests.system.test_backpressure -*-
"""
Memory under backpressure: a backend sends 256 MiB as fast as it may to a
user who does not read, through real labrelay server and client processes.
Neither process may buffer the stream; once the user reads, every byte
arrives in order.
"""

import hashlib
import struct
import time

from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from ..support.harness import async_test, listen, within
from ..support.processes import rss_bytes, start_client, start_server

MIB = 1024 * 1024
TOTAL = 256 * MIB
CHUNK = 64 * 1024
#: The pattern: chunk *i* is its index (8 bytes, big-endian) followed by a
#: fixed pseudo-random block, so a lost, repeated or reordered chunk changes
#: the digest.
_BLOCK = hashlib.shake_256(b"labrelay backpressure").digest(CHUNK)

_log = Logger()


def chunk(index: int) -> bytes:
    return struct.pack(">Q", index) + _BLOCK[8:]


def expected_sha256() -> str:
    digest = hashlib.sha256()
    for index in range(TOTAL // CHUNK):
        digest.update(chunk(index))
    return digest.hexdigest()


@implementer(IPushProducer)
class PatternSender(Protocol):
    """
    Writes TOTAL bytes of the pattern as fast as its transport accepts them:
    it is a streaming producer on its own transport, so the test process
    holds at most about one transport buffer of it.
    """

    def connectionMade(self):
        self.sent = 0
        self.paused = False
        self.first_pause = defer.Deferred()
        self.transport.registerProducer(self, True)
        self.factory.connected.callback(self)
        self._produce()

    def _produce(self):
        while not self.paused and self.sent < TOTAL:
            self.transport.write(chunk(self.sent // CHUNK))
            self.sent += CHUNK
        if self.sent >= TOTAL and not self.paused:
            self.transport.unregisterProducer()
            self.transport.loseConnection()

    def pauseProducing(self):
        self.paused = True
        if not self.first_pause.called:
            self.first_pause.callback(self.sent)

    def resumeProducing(self):
        if self.paused:
            self.paused = False
            self._produce()

    def stopProducing(self):
        self.paused = True


class StalledReader(Protocol):
    """A user that stops reading as soon as it connects, then, when told,
    reads everything, hashing as it goes."""

    def __init__(self):
        self.received = 0
        self.digest = hashlib.sha256()
        self.closed = defer.Deferred()

    def connectionMade(self):
        self.transport.pauseProducing()

    def dataReceived(self, data):
        self.received += len(data)
        self.digest.update(data)

    def connectionLost(self, reason):
        self.closed.callback(self.received)


async def stays_paused(sender, describe, checks=20, interval=0.05, bound=60):
    """Wait until *sender* is paused and stays paused, having sent nothing
    more, for *checks* consecutive checks *interval* seconds apart.  Fail at
    once if it sends everything: then something downstream buffered it."""
    deadline = time.monotonic() + bound
    still, last = 0, None
    while still < checks:
        if sender.sent >= TOTAL:
            raise AssertionError(
                "the backend wrote all 256 MiB while the user was not "
                f"reading: the relay buffered it ({describe()})"
            )
        if time.monotonic() > deadline:
            raise AssertionError(
                f"the backend never stayed paused for {checks} checks in "
                f"{bound}s (sent {sender.sent} bytes; {describe()})"
            )
        await deferLater(reactor, interval, lambda: None)
        if sender.paused and sender.sent == last:
            still += 1
        else:
            still = 0
        last = sender.sent


class BackpressureMixin:
    """256 MiB to a user who stalls, then reads."""

    mux = None
    limit = None
    timeout = 120

    @async_test
    async def test_stalled_user_bounds_memory(self):
        """While the user does not read, neither labrelay process grows by
        more than the limit; afterwards all 256 MiB arrive byte-exact."""
        factory = Factory.forProtocol(PatternSender)
        factory.connected = defer.Deferred()
        backend = listen(self, factory)
        server = await start_server(self, mux=self.mux)
        client = start_client(self, server.port, [("bulk", backend, 0)], mux=self.mux)
        port = await client.proxy_port("bulk")

        def rss():
            return {"server": rss_bytes(server.pid), "client": rss_bytes(client.pid)}

        def describe():
            return ", ".join(f"{k} RSS {v / MIB:.1f} MiB" for k, v in rss().items())

        idle = rss()

        started = time.monotonic()
        user = StalledReader()
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=5)
        await within(endpoint.connect(Factory.forProtocol(lambda: user)))
        self.addCleanup(
            lambda: (
                user.transport.abortConnection() if user.transport.connected else None
            )
        )
        sender = await within(factory.connected)
        await within(sender.first_pause)
        await stays_paused(sender, describe)
        stalled_after = time.monotonic() - started
        stalled = rss()
        in_flight = sender.sent

        user.transport.resumeProducing()
        received = await within(user.closed, 90)
        elapsed = time.monotonic() - started

        growth = {k: stalled[k] - idle[k] for k in idle}
        _log.info(
            "backpressure tcp_mux {mux}: idle RSS server {si:.1f} MiB, "
            "client {ci:.1f} MiB; stalled RSS server {ss:.1f} MiB, client "
            "{cs:.1f} MiB (growth {sg:+.1f} / {cg:+.1f} MiB, limit {limit} "
            "MiB); backend stalled after {stalled_after:.1f}s having sent "
            "{in_flight:.1f} MiB; 256 MiB delivered in {elapsed:.1f}s",
            mux="default (on)" if self.mux is None else self.mux,
            si=idle["server"] / MIB,
            ci=idle["client"] / MIB,
            ss=stalled["server"] / MIB,
            cs=stalled["client"] / MIB,
            sg=growth["server"] / MIB,
            cg=growth["client"] / MIB,
            limit=self.limit,
            stalled_after=stalled_after,
            in_flight=in_flight / MIB,
            elapsed=elapsed,
        )

        self.assertEqual(received, TOTAL)
        self.assertEqual(user.digest.hexdigest(), expected_sha256())
        for name, grew in growth.items():
            self.assertLess(
                grew,
                self.limit * MIB,
                f"{name} RSS grew {grew / MIB:.1f} MiB while the user "
                f"stalled (idle {idle[name] / MIB:.1f} MiB)",
            )


class DefaultMuxBackpressureTests(BackpressureMixin, TestCase):
    """tcp_mux at its default (on): one 6 MiB yamux window per stream."""

    limit = 16


class NoMuxBackpressureTests(BackpressureMixin, TestCase):
    """tcp_mux = false: socket buffers only."""

    mux = False
    limit = 8
