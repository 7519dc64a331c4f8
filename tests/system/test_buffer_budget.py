# -*- test-case-name: tests.system.test_buffer_budget -*-
"""
Memory of many stalled streams, measured on real ``twistd labrelay-server``
and ``labrelay-client`` processes (tcp_mux at its default, on).

Downloads: a backend streams to every connection without end; 100 users of
its tcp tunnel never read.  The server must stay under 100 MiB RSS (a yamux
stream may otherwise hold its whole 6 MiB window: about 600 MiB), while
the echo tunnel works and a new user of the streaming tunnel still reads at
full pace.  Uploads: 50 users push into a tunnel whose backend never reads;
the client must stay under 100 MiB likewise.  Each test logs its figures
to test.log ("buffer budget ...").
"""

import time

from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.trial.unittest import TestCase

from ..support.harness import async_test, echo_server, listen, within
from ..support.load import (
    Pusher,
    PushingUser,
    close_all,
    echo_check,
    poll_until,
    stalled,
)
from ..support.processes import rss_bytes, start_client, start_server

MIB = 1024 * 1024
#: The RSS either process must stay under with every stream stalled.
RSS_BOUND = 100 * MIB
#: Bytes a healthy user must read from the streaming tunnel meanwhile.
HEALTHY_READ = 16 * MIB

_log = Logger()


class StreamingBackend(Protocol):
    """Writes to every connection as fast as its transport accepts, without
    end (the limit is far beyond what the test could read)."""

    def connectionMade(self):
        self.pusher = Pusher(self.transport, 1 << 40)
        self.factory.pushers.append(self.pusher)
        self.factory.count += 1
        self.pusher.start()

    def connectionLost(self, reason):
        self.pusher.stopped = True
        self.factory.lost += 1


class DeafBackend(Protocol):
    """Accepts a connection and never reads from it."""

    def connectionMade(self):
        self.transport.pauseProducing()
        self.factory.count += 1
        # Neither reading nor writing, the reactor holds no reference to
        # the transport: without this one the garbage collector would
        # close the socket (a reset, with unread bytes in it).
        self.factory.kept.append(self)

    def connectionLost(self, reason):
        self.factory.lost += 1


class StalledUser(Protocol):
    """Connects and never reads."""

    def __init__(self):
        self.closed = defer.Deferred()

    def connectionMade(self):
        self.transport.pauseProducing()

    def connectionLost(self, reason):
        self.closed.callback(None)


class Reader(Protocol):
    """Reads and counts; fires ``done`` once *wanted* bytes came."""

    def __init__(self, wanted):
        self.wanted = wanted
        self.received = 0
        self.done = defer.Deferred()
        self.closed = defer.Deferred()

    def dataReceived(self, data):
        self.received += len(data)
        if self.received >= self.wanted and not self.done.called:
            self.done.callback(self.received)

    def connectionLost(self, reason):
        self.closed.callback(None)


def backend(protocol):
    """A factory of *protocol* that counts connections made and lost."""
    factory = Factory.forProtocol(protocol)
    factory.count = factory.lost = 0
    factory.pushers = []
    factory.kept = []
    return factory


async def connect_all(testcase, port, peers, batch=10, factory=None):
    """Connect every protocol of *peers* to 127.0.0.1:*port*, *batch* at a
    time; with a backend *factory*, wait after each batch until the backend
    has as many connections (so that the client never has many local dials
    pending at once on a loaded machine).  They are aborted at cleanup."""
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=10)
    testcase.addCleanup(close_all, peers)
    for first in range(0, len(peers), batch):
        group = peers[first : first + batch]
        await within(
            defer.gatherResults(
                [endpoint.connect(Factory.forProtocol(lambda p=p: p)) for p in group]
            ),
            10,
        )
        if factory is not None:
            wanted = first + len(group)
            await poll_until(
                lambda: factory.count >= wanted,
                lambda: f"{factory.count} backend connections for {wanted} users",
                30,
            )


class BufferBudgetTests(TestCase):
    """Stalled streams through real processes; both stay bounded and serve.
    tcp_mux at its default (on), the client with TLS (frpc's default)."""

    timeout = 180
    mux = None

    @property
    def mux_name(self):
        return "default (on)" if self.mux is None else self.mux

    async def deploy(self, backend_factory):
        """A server and a client with tunnels ``echo`` and ``bulk`` (to
        *backend_factory*); return (server, client, echo port, bulk port)."""
        server = await start_server(self, mux=self.mux)
        client = start_client(
            self,
            server.port,
            [
                ("echo", echo_server(self), 0),
                ("bulk", listen(self, backend_factory), 0),
            ],
            mux=self.mux,
        )
        echo_port = await client.proxy_port("echo")
        bulk_port = await client.proxy_port("bulk")
        await echo_check(self, echo_port)  # warm up
        return server, client, echo_port, bulk_port

    def rss(self, server, client):
        return {"server": rss_bytes(server.pid), "client": rss_bytes(client.pid)}

    @staticmethod
    def describe(rss, factory=None):
        text = ", ".join(f"{k} RSS {v / MIB:.1f} MiB" for k, v in rss.items())
        if factory is not None:
            # A backend connection lost early makes its stream drop what
            # the user sends (the relay then buffers nothing either).
            text += f"; backend connections {factory.count}, lost {factory.lost}"
        return text

    @async_test
    async def test_stalled_downloads(self):
        """100 users who never read a backend that streams without end keep
        the server under 100 MiB; the echo tunnel and a new reading user of
        the same tunnel keep working meanwhile."""
        count = 100
        factory = backend(StreamingBackend)
        server, client, echo_port, bulk_port = await self.deploy(factory)
        idle = self.rss(server, client)

        users = [StalledUser() for _ in range(count)]
        started = time.monotonic()
        await connect_all(self, bulk_port, users, factory=factory)
        sent = await stalled(
            factory.pushers[:count],
            lambda: self.describe(self.rss(server, client), factory),
            bound=90,
        )
        stall_time = time.monotonic() - started
        under = self.rss(server, client)
        self.assertEqual(factory.lost, 0, "a backend connection was lost")

        echo_time = await echo_check(self, echo_port)
        reader = Reader(HEALTHY_READ)
        read_started = time.monotonic()
        await connect_all(self, bulk_port, [reader])
        await within(reader.done, 60)
        read_time = time.monotonic() - read_started
        after_read = self.rss(server, client)

        _log.info(
            "buffer budget downloads (tcp_mux {mux}): {count} stalled users; "
            "idle {idle}; "
            "stalled {under} after {stall:.1f}s, backend sent {sent:.0f} MiB; "
            "echo during {echo:.0f} ms; a new user read {read:.0f} MiB in "
            "{read_time:.2f}s; then {after}",
            count=count,
            mux=self.mux_name,
            idle=self.describe(idle),
            under=self.describe(under),
            stall=stall_time,
            sent=sent / MIB,
            echo=echo_time * 1000,
            read=HEALTHY_READ / MIB,
            read_time=read_time,
            after=self.describe(after_read),
        )
        for name in ("server", "client"):
            self.assertLess(
                under[name],
                RSS_BOUND,
                f"{name}: {self.describe(under)} with {count} stalled users",
            )
            self.assertLess(after_read[name], RSS_BOUND)

    @async_test
    async def test_stalled_uploads(self):
        """50 users who push into a tunnel whose backend never reads keep
        the client (and the server) under 100 MiB; the echo tunnel keeps
        working."""
        count = 50
        factory = backend(DeafBackend)
        server, client, echo_port, bulk_port = await self.deploy(factory)
        idle = self.rss(server, client)

        users = [PushingUser(limit=1 << 30) for _ in range(count)]
        started = time.monotonic()
        await connect_all(self, bulk_port, users, factory=factory)
        for user in users:
            user.pusher.start()
        sent = await stalled(
            [u.pusher for u in users],
            lambda: self.describe(self.rss(server, client), factory),
            bound=90,
        )
        stall_time = time.monotonic() - started
        under = self.rss(server, client)
        self.assertEqual(factory.lost, 0, "a backend connection was lost")
        echo_time = await echo_check(self, echo_port)

        _log.info(
            "buffer budget uploads (tcp_mux {mux}): {count} pushing users; "
            "idle {idle}; "
            "stalled {under} after {stall:.1f}s, users sent {sent:.0f} MiB; "
            "echo during {echo:.0f} ms",
            count=count,
            mux=self.mux_name,
            idle=self.describe(idle),
            under=self.describe(under),
            stall=stall_time,
            sent=sent / MIB,
            echo=echo_time * 1000,
        )
        for name in ("server", "client"):
            self.assertLess(
                under[name],
                RSS_BOUND,
                f"{name}: {self.describe(under)} with {count} stalled uploads",
            )


class NoMuxBufferBudgetTests(BufferBudgetTests):
    """The same with tcp_mux = false: one work connection per user."""

    mux = False
