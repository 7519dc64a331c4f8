"""
The kernel splice between two real loopback TCP connections: every byte
arrives, in order, both ways at once; half-close, pending bytes, resets and a
reader that stops reading behave as with the ordinary splice; nothing leaks.
"""

import hashlib
import os

from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from labrelay import kernel_splice
from labrelay.kernel_splice import PIPE_SIZE, KernelSplice, make_splice
from labrelay.protocol.codec import PayloadCodec
from labrelay.relay import RelayedProtocol, Splice

from ..support.harness import (
    Echo,
    connect_user,
    listen,
    wait_until,
    within,
)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


class Front(RelayedProtocol):
    """The relay's side towards the user: paused until the splice starts."""

    def __init__(self, relay):
        self.relay = relay
        self.ended = None

    def connectionMade(self):
        self.transport.pauseProducing()
        self.relay.front_made(self)

    def connection_ended(self, reason):
        self.ended = reason


class Back(RelayedProtocol):
    ended = None

    def connection_ended(self, reason):
        self.ended = reason


class SpliceRelay:
    """
    Listens; for each user connection dials *backend_port* and splices the
    two with :func:`make_splice` once the first user bytes are in (so that
    they are pending bytes), or at once with ``wait_for_bytes=False``.
    """

    def __init__(self, testcase, backend_port, codec=None):
        self.testcase = testcase
        self.backend_port = backend_port
        self.codec = codec
        self.splices = []
        self.closed = []
        self.started = defer.Deferred()
        self.port = listen(testcase, Factory.forProtocol(lambda: Front(self)))

    def front_made(self, front):
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.backend_port)
        back = Back()

        def connected(_):
            splice = make_splice(
                front,
                back,
                b_codec=self.codec,
                on_close=self.closed.append,
                description="test",
            )
            self.splices.append(splice)
            splice.start(
                a_pending=front.take_early_data(), b_pending=back.take_early_data()
            )
            self.started.callback(splice)

        endpoint.connect(Factory.forProtocol(lambda: back)).addCallback(connected)


@implementer(IHalfCloseableProtocol)
class Sink(Protocol):
    """Counts and hashes what it gets; at EOF answers ``<count> <sha256>``."""

    def __init__(self):
        self.count = 0
        self.hash = hashlib.sha256()

    def dataReceived(self, data):
        self.count += len(data)
        self.hash.update(data)

    def readConnectionLost(self):
        self.transport.write(f"{self.count} {self.hash.hexdigest()}".encode())
        self.transport.loseConnection()

    def writeConnectionLost(self):
        pass


class Resetter(Protocol):
    """Aborts the connection (RST) on the first byte."""

    def dataReceived(self, data):
        self.transport.abortConnection()


class Stalled(Protocol):
    """Stops reading at once; ``resume()`` reads again and counts."""

    instances = []

    def __init__(self):
        self.count = 0
        Stalled.instances.append(self)

    def connectionMade(self):
        self.transport.pauseProducing()

    def dataReceived(self, data):
        self.count += len(data)

    def resume(self):
        self.transport.resumeProducing()


class KernelSpliceTests(TestCase):
    def setUp(self):
        if not kernel_splice.enabled():
            raise RuntimeError("these tests need splice(2) (Linux)")
        Stalled.instances = []

    async def relay_to(self, protocol_class, codec=None):
        backend = listen(self, Factory.forProtocol(protocol_class))
        relay = SpliceRelay(self, backend, codec)
        return relay, await connect_user(self, relay.port)

    async def test_plain_tcp_is_spliced_in_the_kernel(self):
        """Two plain TCP connections without a codec get a KernelSplice."""
        relay, user = await self.relay_to(Echo)
        user.transport.write(b"hello")
        self.assertEqual(await within(user.wait_for(5)), b"hello")
        self.assertIsInstance(relay.splices[0], KernelSplice)

    async def test_a_codec_keeps_the_ordinary_splice(self):
        """Bytes that must change (frp's encryption) stay in Python."""
        codec = PayloadCodec("token", True, False)
        relay, user = await self.relay_to(Echo, codec=codec)
        user.transport.write(b"x")
        await within(relay.started)
        self.assertIsInstance(relay.splices[0], Splice)

    async def test_bulk_both_ways_at_once(self):
        """16 MiB through an echo: every byte back, in order; the counters
        agree."""
        relay, user = await self.relay_to(Echo)
        payload = os.urandom(16 << 20)
        for i in range(0, len(payload), 1 << 20):
            user.transport.write(payload[i : i + (1 << 20)])
        got = await within(user.wait_for(len(payload)), 60)
        self.assertEqual(got, payload)
        splice = relay.splices[0]
        self.assertEqual(splice.bytes_a_to_b, len(payload))
        self.assertEqual(splice.bytes_b_to_a, len(payload))

    async def test_without_pipes_bytes_go_through_memory(self):
        """
        With every pipe lent out (the process-wide bound), a direction reads
        64 KiB at a time into memory instead: still every byte, in order.
        """
        self.patch(kernel_splice._pipes, "limit", 0)
        relay, user = await self.relay_to(Echo)
        payload = os.urandom(4 << 20)
        user.transport.write(payload)
        self.assertEqual(await within(user.wait_for(len(payload)), 60), payload)
        self.assertIsInstance(relay.splices[0], KernelSplice)
        self.assertEqual(kernel_splice._pipes.lent, 0)

    async def test_many_small_exchanges(self):
        """300 request/answer turns of 1 to 3000 bytes: none is held back."""
        relay, user = await self.relay_to(Echo)
        total = 0
        for i in range(300):
            message = bytes([i % 256]) * (1 + (i * 37) % 3000)
            user.transport.write(message)
            total += len(message)
            got = await within(user.wait_for(total))
            self.assertEqual(got[-len(message) :], message)

    async def test_pending_bytes_first_and_half_close(self):
        """
        Bytes sent before the splice started arrive first; the user's
        half-close reaches the backend only after all its bytes, and the
        backend's answer still comes back the other way.
        """
        relay, user = await self.relay_to(Sink)
        head = b"before the splice "
        user.transport.write(head)
        await within(relay.started)
        body = os.urandom(3 << 20)
        user.transport.write(body)
        user.transport.loseWriteConnection()
        answer = await within(user.eof, 30)
        expected = hashlib.sha256(head + body).hexdigest()
        self.assertEqual(answer, f"{len(head) + len(body)} {expected}".encode())
        await within(user.closed)
        await within(wait_until(lambda: len(relay.closed) == 1))
        self.assertEqual(kernel_splice._pipes.lent, 0)

    async def test_reset_closes_both_and_leaks_nothing(self):
        """A backend that resets: the user is closed, both relay protocols
        see connectionLost, on_close runs once, no descriptor is left."""
        fds_before = open_fds()
        relay, user = await self.relay_to(Resetter)
        user.transport.write(b"boom" * 1000)
        await within(user.closed)
        await within(wait_until(lambda: len(relay.closed) == 1))
        self.assertEqual(len(relay.closed), 1)
        self.assertEqual(kernel_splice._pipes.lent, 0)
        # the pool may keep idle pipes; nothing else may stay open
        pooled = 2 * len(kernel_splice._pipes._idle)
        await within(wait_until(lambda: open_fds() <= fds_before + pooled + 1))

    async def test_a_reader_that_stops_holds_a_bounded_amount(self):
        """
        While the backend does not read, the splice stops reading the user
        once one pipe is full (at most PIPE_SIZE bytes held), and the user's
        own sends back up; when the backend reads again, everything arrives.
        """
        relay, user = await self.relay_to(Stalled)
        payload = os.urandom(24 << 20)
        user.transport.write(payload)
        await within(relay.started)
        splice = relay.splices[0]
        direction = splice._a_to_b
        await within(
            wait_until(lambda: direction.dst.writing and not direction.src.reading), 20
        )
        self.assertLessEqual(direction.in_pipe + len(direction.pending), PIPE_SIZE)
        # the user's transport still holds most of the payload
        self.assertGreater(len(user.transport.dataBuffer), 8 << 20)
        Stalled.instances[0].resume()
        await within(wait_until(lambda: Stalled.instances[0].count == len(payload)), 60)
        self.assertEqual(splice.bytes_a_to_b, len(payload))

    async def test_user_leaves_first(self):
        """The user closing ends the backend connection too."""
        relay, user = await self.relay_to(Echo)
        user.transport.write(b"ping")
        await within(user.wait_for(4))
        user.transport.loseConnection()
        await within(user.closed)
        await within(wait_until(lambda: len(relay.closed) == 1))
