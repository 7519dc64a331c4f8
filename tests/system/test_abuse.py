# -*- test-case-name: tests.system.test_abuse -*-
"""
Resource bounds under abuse, measured on real ``twistd labrelay-server``
and ``labrelay-client`` processes (tcp_mux at its default, on).

Each test runs a server and a client with a working tcp tunnel to an echo
backend in this process (and, where the abuse is HTTP, a vhost with http
proxies), measures the server's VmRSS and open file descriptors while idle,
applies one abuse, checks that the tunnel still works byte-exact during it
and that RSS growth stays under a stated bound, and finally that the server
has closed every abusive socket (its fd count is back to the idle count).

The abuses: 1,000 idle sockets on the bind port; a slowloris on the vhost;
a logged-in yamux client (written here from labrelay's protocol modules)
that stops reading while users push into its tunnel; a vhost user who
never reads a 256 MiB response; 1,100 yamux sessions from 40 addresses that
never log in but keep busy, against which a client from a fresh address
must get in within 15 s.  Each test logs its numbers to test.log
("abuse ...").  The handshake bound (``unauthenticated_timeout``, 10 s)
and the vhost head bound (30 s) are left at their defaults, so the tests
take about 80 s in all.
"""

import hashlib
import resource
import time

from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.interfaces import IHalfCloseableProtocol, IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import Logger
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import Site
from zope.interface import implementer

from labrelay import FRP_VERSION
from labrelay.mux.session import YamuxSession
from labrelay.protocol import messages
from labrelay.protocol.auth import privilege_key
from labrelay.protocol.crypto import StreamDecryptor, StreamEncryptor, derive_key
from labrelay.protocol.framing import MessageParser, encode_message
from labrelay.server.connection import FIRST_MESSAGE_TIMEOUT
from labrelay.server.vhost import HEAD_TIMEOUT, LINGER_TIMEOUT

from ..support.harness import async_test, echo_server, listen, within
from ..support.load import (
    Pusher,
    PushingUser,
    close_all,
    echo_check,
    poll_until,
    stalled,
)
from ..support.processes import (
    TOKEN,
    ClientProcess,
    client_ini,
    fd_count,
    free_port,
    rss_bytes,
    start_server,
    twistd,
    write_config,
)
from ..support.vhost import http_user

KIB = 1024
MIB = 1024 * KIB

#: The server's bounds under test, at their defaults.
HANDSHAKE_BOUND = FIRST_MESSAGE_TIMEOUT
HEAD_BOUND = HEAD_TIMEOUT
LINGER_BOUND = LINGER_TIMEOUT
#: Allowed lateness of a close past its bound (a loaded 2-core machine).
SLACK = 5
#: Descriptors the server may hold beyond its idle count once the abuse is
#: over: none (the wait polls until the count is back).
FD_SLACK = 0

WEB_BODY = hashlib.shake_256(b"labrelay abuse web").hexdigest(8 * KIB).encode()

_log = Logger()


# -- measuring -----------------------------------------------------------------


class Snapshot:
    """The server's VmRSS and open descriptors at one moment."""

    def __init__(self, pid):
        self.rss = rss_bytes(pid)
        self.fds = fd_count(pid)

    def __str__(self):
        return f"RSS {self.rss / MIB:.1f} MiB, {self.fds} fds"


async def fds_back_to(testcase, pid, idle_fds, bound):
    """Wait until the server holds at most *idle_fds* + FD_SLACK fds; return
    the count."""
    await poll_until(
        lambda: fd_count(pid) <= idle_fds + FD_SLACK,
        lambda: f"server still has {fd_count(pid)} fds (idle {idle_fds})",
        bound,
    )
    return fd_count(pid)


async def open_many(testcase, pid, idle_fds, port, peers, batch=25):
    """
    Connect every protocol of *peers* (each with a ``closed_at``) to
    127.0.0.1:*port*, *batch* at a time, waiting after each batch until the
    server holds every one still open (its fds beyond *idle_fds*).  A batch
    under the listen backlog (50) means no handshake waits for a SYN-ACK
    retransmit.  Return the seconds it took.
    """
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=10)
    testcase.addCleanup(close_all, peers)
    started = time.monotonic()
    for first in range(0, len(peers), batch):
        group = peers[first : first + batch]
        await within(
            defer.gatherResults(
                [endpoint.connect(Factory.forProtocol(lambda p=p: p)) for p in group]
            ),
            10,
        )
        opened = peers[: first + len(group)]

        def held():
            return sum(p.closed_at is None for p in opened)

        await poll_until(
            lambda: fd_count(pid) - idle_fds >= held(),
            lambda: (
                f"the server has {fd_count(pid)} fds (idle {idle_fds}) "
                f"for {held()} open connections"
            ),
            HANDSHAKE_BOUND,
        )
    return time.monotonic() - started


# -- the working tunnel and vhost ---------------------------------------------


async def web_check(testcase, vhost_port, host="web.test"):
    """One GET through the vhost on a new connection: 200 and WEB_BODY;
    return the time it took."""
    started = time.monotonic()
    user = await http_user(testcase, vhost_port)
    reply = await user.request(host, "/")
    testcase.assertEqual((reply.status, reply.body), (200, WEB_BODY))
    user.transport.loseConnection()
    await within(user.closed, 10)
    return time.monotonic() - started


class _WebPage(Resource):
    isLeaf = True

    def render_GET(self, request):
        request.setHeader(b"Content-Type", b"text/plain")
        return WEB_BODY


def web_backend(testcase):
    """An HTTP backend answering every GET with WEB_BODY; its port."""
    return listen(testcase, Site(_WebPage()))


class Deployment:
    """A server process and a client process with a tcp tunnel ``echo``
    and the given http proxies."""

    async def start(self, testcase, http=(), vhost=False, server_extra=""):
        """*http*: (name, local_port, domain) of http proxies."""
        extra = server_extra
        self.vhost_port = None
        if vhost or http:
            self.vhost_port = free_port()
            extra += f"vhost_http_port = {self.vhost_port}\n"
        self.server = await start_server(testcase, extra=extra)
        if self.vhost_port:
            await self.server.process.wait_for(rf"starting on {self.vhost_port}$")
        text = client_ini(self.server.port, [("echo", echo_server(testcase), 0)])
        for name, port, domain in http:
            text += (
                f"\n[{name}]\ntype = http\nlocal_ip = 127.0.0.1\n"
                f"local_port = {port}\ncustom_domains = {domain}\n"
            )
        path = write_config(testcase, "frpc.ini", text)
        self.client = ClientProcess(twistd(testcase, "labrelay-client", path), path)
        self.tcp_port = await self.client.proxy_port("echo")
        for name, _, _ in http:
            await self.client.proxy_port(name)
        # Warm up (first connections load code and fill caches), so that
        # the idle snapshot is not an underestimate.
        for _ in range(2):
            await echo_check(testcase, self.tcp_port)
            if http:
                await web_check(testcase, self.vhost_port)
        return self

    @property
    def pid(self):
        return self.server.pid

    def snapshot(self):
        return Snapshot(self.pid)

    async def idle_snapshot(self, checks=10, interval=0.05, bound=5):
        """A snapshot once the server's fd count has not changed for
        *checks* polls *interval* seconds apart (the warm-up connections'
        closes have been handled)."""
        deadline = time.monotonic() + bound
        still, last = 0, None
        while still < checks:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"the server's fd count did not settle within {bound}s (now {last})"
                )
            await deferLater(reactor, interval, lambda: None)
            count = fd_count(self.pid)
            still = still + 1 if count == last else 0
            last = count
        return self.snapshot()


# -- abusive peers -------------------------------------------------------------


class IdleSocket(Protocol):
    """Connects and never sends a byte; notes when it was connected and
    when the server closed it."""

    def __init__(self):
        self.connected_at = None
        self.closed_at = None
        self.closed = defer.Deferred()

    def connectionMade(self):
        self.connected_at = time.monotonic()

    def connectionLost(self, reason):
        self.closed_at = time.monotonic()
        self.closed.callback(self.closed_at - self.connected_at)


@implementer(IHalfCloseableProtocol)
class Slowloris(Protocol):
    """Sends an endless request head one byte per :meth:`tick`, and keeps
    sending after the server's answer and FIN."""

    HEAD = b"GET / HTTP/1.1\r\nHost: web.test\r\nX-Slow: " + b"a" * 200

    def __init__(self):
        self.sent = 0
        self.received = b""
        self.connected_at = None
        self.eof_at = None
        self.closed_at = None
        self.closed = defer.Deferred()

    def connectionMade(self):
        self.connected_at = time.monotonic()

    def tick(self):
        if self.closed_at is None:
            self.transport.write(self.HEAD[self.sent % len(self.HEAD) :][:1])
            self.sent += 1

    def dataReceived(self, data):
        self.received += data

    def readConnectionLost(self):
        self.eof_at = time.monotonic()

    def writeConnectionLost(self):
        pass

    def connectionLost(self, reason):
        self.closed_at = time.monotonic()
        self.closed.callback(self.closed_at - self.connected_at)


@implementer(IPushProducer)
class BulkBackend(Protocol):
    """An HTTP backend answering its first request with *total* bytes
    (Content-Length), written as fast as its transport accepts them."""

    total = 256 * MIB

    def __init__(self):
        self.head = b""
        self.pusher = None
        self.closed = defer.Deferred()

    def dataReceived(self, data):
        self.head += data
        if self.pusher is None and b"\r\n\r\n" in self.head:
            self.transport.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: "
                b"application/octet-stream\r\n"
                b"Content-Length: %d\r\n\r\n" % self.total
            )
            self.pusher = Pusher(self.transport, self.total)
            self.factory.answering.callback(self)
            self.pusher.start()

    def connectionLost(self, reason):
        if self.pusher is not None:
            self.pusher.stopped = True
        self.closed.callback(None)


class StalledHttpUser(Protocol):
    """Sends one GET for *host* and never reads the answer."""

    def __init__(self, host):
        self.host = host
        self.closed = defer.Deferred()

    def connectionMade(self):
        self.transport.pauseProducing()
        self.transport.write(
            b"GET /big HTTP/1.1\r\nHost: %s\r\n\r\n" % self.host.encode()
        )

    def connectionLost(self, reason):
        self.closed.callback(None)


# -- a raw yamux client that stops reading -------------------------------------


class _RawControl(Protocol):
    """The abuser's control stream: Login, one tcp proxy, and a work stream
    for every ReqWorkConn (as long as the session reads)."""

    def __init__(self, abuser):
        self.abuser = abuser
        self.parser = MessageParser()
        self.encryptor = self.decryptor = None

    def connectionMade(self):
        now = int(time.time())
        self.send(
            messages.Login(
                version=FRP_VERSION,
                privilege_key=privilege_key(TOKEN, now),
                timestamp=now,
                pool_count=0,
            )
        )

    def send(self, message):
        data = encode_message(message)
        if self.encryptor is not None:
            data = self.encryptor.encrypt(data)
        self.transport.write(data)

    def dataReceived(self, data):
        if self.decryptor is not None:
            data = self.decryptor.decrypt(data)
        self.parser.feed(data)
        while True:
            message = self.parser.next_message()
            if message is None:
                return
            self.handle(message)

    def handle(self, message):
        abuser = self.abuser
        if isinstance(message, messages.LoginResp):
            if message.error:
                abuser.registered.errback(AssertionError(message.error))
                return
            abuser.run_id = message.run_id
            key = derive_key(TOKEN)
            self.encryptor = StreamEncryptor(key)
            self.decryptor = StreamDecryptor(key)
            rest = self.parser.take_rest()
            self.parser.feed(self.decryptor.decrypt(rest))
            self.send(
                messages.NewProxy(proxy_name="abuse", proxy_type="tcp", remote_port=0)
            )
        elif isinstance(message, messages.NewProxyResp):
            if message.error:
                abuser.registered.errback(AssertionError(message.error))
            else:
                abuser.registered.callback(int(message.remote_addr.rsplit(":", 1)[1]))
        elif isinstance(message, messages.ReqWorkConn):
            abuser.session.open_stream(_RawWork(abuser))


class _RawWork(Protocol):
    """One of the abuser's work streams: NewWorkConn, then it counts the
    StartWorkConn it gets and ignores the user's bytes."""

    def __init__(self, abuser):
        self.abuser = abuser
        self.started = False

    def connectionMade(self):
        now = int(time.time())
        self.transport.write(
            encode_message(
                messages.NewWorkConn(
                    run_id=self.abuser.run_id,
                    privilege_key=privilege_key(TOKEN, now),
                    timestamp=now,
                )
            )
        )

    def dataReceived(self, data):
        if not self.started:
            self.started = True
            self.abuser.work_started()


class Abuser(YamuxSession):
    """
    A yamux client written from labrelay's protocol modules: it logs in,
    registers a tcp proxy and opens work streams; :meth:`stop_reading` then
    stops it reading its TCP connection for good.
    """

    def __init__(self):
        super().__init__(is_client=True, clock=reactor, keepalive_interval=0)
        self.session = self
        self.run_id = ""
        self.registered = defer.Deferred()
        self.started = 0
        self._started_waiters = []  # (count, Deferred)

    def connectionMade(self):
        super().connectionMade()
        self.open_stream(_RawControl(self))

    def work_started(self):
        self.started += 1
        for count, d in list(self._started_waiters):
            if self.started >= count:
                self._started_waiters.remove((count, d))
                d.callback(self.started)

    def when_started(self, count):
        """A Deferred firing once *count* work streams got StartWorkConn."""
        if self.started >= count:
            return defer.succeed(self.started)
        d = defer.Deferred()
        self._started_waiters.append((count, d))
        return d

    def stop_reading(self):
        self.transport.pauseProducing()


# -- a flood of sessions that never log in --------------------------------------


class SquattingSession(YamuxSession):
    """
    A yamux session that never logs in: it answers Pings and opens one
    silent stream 5 s after connecting (so that a check of stream-less
    sessions at 10 s sees a stream).  On the flood's behalf it reconnects
    when the server closes it.
    """

    def __init__(self, flood, source):
        super().__init__(is_client=True, clock=reactor, keepalive_interval=0)
        self.flood = flood
        self.source = source
        self.closed = defer.Deferred()
        self._stream_call = None

    def connectionMade(self):
        super().connectionMade()
        self._stream_call = reactor.callLater(5, self._open)

    def _open(self):
        self._stream_call = None
        if not self._closed:
            self.open_stream(Protocol())

    def connectionLost(self, reason):
        if self._stream_call is not None and self._stream_call.active():
            self._stream_call.cancel()
        super().connectionLost(reason)
        self.closed.callback(None)
        self.flood.lost(self)


class SessionFlood:
    """
    *size* squatting sessions to 127.0.0.1:*port* from the given source
    addresses (round robin), each replaced 0.2 s after the server closes
    it, at most *max_connections* in all.
    """

    def __init__(self, port, sources, size, max_connections=50000):
        self.port = port
        self.sources = sources
        self.size = size
        self.max_connections = max_connections
        self.live = set()
        self.connections = 0
        self.closed_by_server = 0
        self.failed = 0
        self.stopped = False
        self._calls = set()
        self._dialing = set()

    def _connect(self, source):
        self.connections += 1
        session = SquattingSession(self, source)
        endpoint = TCP4ClientEndpoint(
            reactor, "127.0.0.1", self.port, timeout=10, bindAddress=(source, 0)
        )
        factory = Factory.forProtocol(lambda: session)
        factory.noisy = False
        d = endpoint.connect(factory)
        self._dialing.add(d)

        def connected(_):
            self._dialing.discard(d)
            if self.stopped:
                session.transport.abortConnection()
            else:
                self.live.add(session)

        def failed(_):
            self._dialing.discard(d)
            self.failed += 1

        return d.addCallbacks(connected, failed)

    async def start(self, batch=25):
        """Open the first *size* sessions, *batch* at a time (under the
        listen backlog); return the seconds it took."""
        started = time.monotonic()
        for first in range(0, self.size, batch):
            await within(
                defer.gatherResults(
                    [
                        self._connect(self.sources[i % len(self.sources)])
                        for i in range(first, min(first + batch, self.size))
                    ]
                ),
                20,
            )
        return time.monotonic() - started

    def lost(self, session):
        self.live.discard(session)
        if self.stopped:
            return
        self.closed_by_server += 1
        if self.connections < self.max_connections:
            call = reactor.callLater(0.2, self._again, session.source)
            self._calls.add(call)

    def _again(self, source):
        self._calls = {c for c in self._calls if c.active()}
        if not self.stopped:
            self._connect(source)

    def stop(self):
        """Stop replacing sessions and close every one; a Deferred firing
        once all are closed."""
        self.stopped = True
        for call in self._calls:
            if call.active():
                call.cancel()
        for dialing in list(self._dialing):
            dialing.cancel()  # a reconnect still connecting (a loaded machine)
        live = list(self.live)
        for session in live:
            session.transport.abortConnection()
        return within(defer.gatherResults([s.closed for s in live]), 20)


class _LoginStream(Protocol):
    """Sends a correct Login; fires *answered* with the LoginResp."""

    def __init__(self, answered):
        self.answered = answered
        self.parser = MessageParser()

    def connectionMade(self):
        now = int(time.time())
        self.transport.write(
            encode_message(
                messages.Login(
                    version=FRP_VERSION,
                    privilege_key=privilege_key(TOKEN, now),
                    timestamp=now,
                    pool_count=0,
                )
            )
        )

    def dataReceived(self, data):
        self.parser.feed(data)
        message = self.parser.next_message()
        if message is not None and not self.answered.called:
            self.answered.callback(message)

    def connectionLost(self, reason):
        if not self.answered.called:
            self.answered.errback(reason)


async def fresh_login(port, source, bound, retry=0.5):
    """
    Log in as a new client from *source*, retrying *retry* s after each
    refusal (a reset, a closed session), as frpc does; return (seconds
    until the LoginResp without error, attempts).  Fail after *bound* s.
    """
    started = time.monotonic()
    attempts = 0
    while time.monotonic() - started < bound:
        attempts += 1
        session = YamuxSession(is_client=True, clock=reactor, keepalive_interval=0)
        answered = defer.Deferred()
        endpoint = TCP4ClientEndpoint(
            reactor, "127.0.0.1", port, timeout=5, bindAddress=(source, 0)
        )
        try:
            await within(endpoint.connect(Factory.forProtocol(lambda: session)), 5)
            session.open_stream(_LoginStream(answered))
            response = await within(answered, 5)
        except Exception:
            response = None
        finally:
            if session.transport is not None:
                session.transport.abortConnection()
        if response is not None and not response.error:
            return time.monotonic() - started, attempts
        await deferLater(reactor, retry, lambda: None)
    raise AssertionError(
        f"a correct Login from {source} was kept out for {bound}s ({attempts} attempts)"
    )


# -- the tests -----------------------------------------------------------------


class AbuseTests(TestCase):
    """Abuse against real processes; the server stays bounded and serves."""

    timeout = 120

    def raise_fd_limit(self, wanted):
        """Raise our soft RLIMIT_NOFILE (inherited by the processes we
        spawn) to *wanted*, within the hard limit; restored afterwards."""
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft >= wanted:
            return
        if hard != resource.RLIM_INFINITY and hard < wanted:
            self.fail(
                f"RLIMIT_NOFILE hard limit {hard} < {wanted}: raise it to run this test"
            )
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        self.addCleanup(resource.setrlimit, resource.RLIMIT_NOFILE, (soft, hard))

    def report(self, name, idle, under, after, bound, **numbers):
        """Log one test's measurements (to _trial_temp/test.log)."""
        extra = ", ".join(f"{k} {v}" for k, v in numbers.items())
        _log.info(
            "abuse {name}: idle {idle}; under abuse {under} (growth "
            "{growth:+.1f} MiB, bound {bound:.1f} MiB); after {after} "
            "fds; {extra}",
            name=name,
            idle=idle,
            under=under,
            growth=(under.rss - idle.rss) / MIB,
            bound=bound / MIB,
            after=after,
            extra=extra,
        )

    @async_test
    async def test_idle_unauthenticated_sockets(self):
        """1,000 idle TCP sockets on the bind port cost bounded memory, do
        not disturb the tunnel, and are all closed by the handshake bound."""
        count = 1000
        self.raise_fd_limit(count + 1024)
        relay = await Deployment().start(self)
        idle = await relay.idle_snapshot()

        sockets = [IdleSocket() for _ in range(count)]
        opened_in = await open_many(
            self, relay.pid, idle.fds, relay.server.port, sockets
        )
        under = relay.snapshot()
        held = sum(s.closed_at is None for s in sockets)
        echo_time = await echo_check(self, relay.tcp_port)

        lifetimes = await within(
            defer.gatherResults([s.closed for s in sockets]),
            HANDSHAKE_BOUND + SLACK + opened_in,
        )
        after = await fds_back_to(self, relay.pid, idle.fds, SLACK)

        # Per pending socket the server keeps a transport, a sniffing
        # protocol and a timer (a few KiB); 16 KiB each is the bound.
        bound = count * 16 * KIB
        self.report(
            "idle sockets",
            idle,
            under,
            after,
            bound,
            opened_in=f"{opened_in:.2f}s",
            held_at_once=held,
            closed_after=f"{min(lifetimes):.2f}-{max(lifetimes):.2f}s",
            echo_during=f"{echo_time * 1000:.0f}ms",
        )
        # A cap on unauthenticated connections may refuse some at once;
        # each one held is a descriptor until the handshake bound.
        self.assertGreaterEqual(under.fds, idle.fds + held)
        self.assertLess(under.rss - idle.rss, bound)
        self.assertLessEqual(max(lifetimes), HANDSHAKE_BOUND + SLACK)

    @async_test
    async def test_session_flood_does_not_lock_out_a_new_client(self):
        """
        1,100 yamux sessions from 40 addresses that never log in, answer
        Pings, open a stream at 5 s and reconnect whenever closed (more
        than max_unauthenticated_connections, 1,024) do not keep a correct
        client of a fresh address out for more than 15 s, nor disturb the
        tunnel; once they stop the server holds nothing of them.
        """
        size, bound = 1100, 15
        self.raise_fd_limit(2 * size + 1024)
        relay = await Deployment().start(self)
        idle = await relay.idle_snapshot()
        sources = [f"127.0.0.{10 + i}" for i in range(40)]
        flood = SessionFlood(relay.server.port, sources, size)
        self.addCleanup(lambda: flood.stop() if not flood.stopped else None)
        mark = relay.server.process.mark()
        opened_in = await flood.start()
        # the total cap is reached: evicting (or, before, refusing)
        await relay.server.process.wait_for(
            "closing the oldest one from|refusing new connections",
            since=mark,
            timeout=20,
        )
        under = relay.snapshot()
        # once when the cap is first reached, once 10 s later, in the
        # steady state: sessions with a stream, reconnecting as fast as
        # they are evicted or reach their deadline (the server's second
        # rate-limited eviction line)
        first, attempts = await fresh_login(relay.server.port, "127.0.0.200", bound)
        await relay.server.process.wait_for(
            r"\([1-9]\d* more evicted since|within 10s.*; closing",
            since=mark,
            timeout=20,
        )
        later, more = await fresh_login(relay.server.port, "127.0.0.201", bound)
        login_time, attempts = max(first, later), attempts + more
        echo_time = await echo_check(self, relay.tcp_port)
        live = len(flood.live)
        await flood.stop()
        after = await fds_back_to(self, relay.pid, idle.fds, HANDSHAKE_BOUND + SLACK)
        bound_rss = size * 32 * KIB
        self.report(
            "session flood",
            idle,
            under,
            after,
            bound_rss,
            sessions=size,
            sources=len(sources),
            opened_in=f"{opened_in:.2f}s",
            fresh_login_after=f"{first:.2f}s and {later:.2f}s",
            login_attempts=attempts,
            live_at_end=live,
            connections=flood.connections,
            closed_by_server=flood.closed_by_server,
            echo_during=f"{echo_time * 1000:.0f}ms",
        )
        self.assertLessEqual(login_time, bound)
        self.assertLess(under.rss - idle.rss, bound_rss)

    @async_test
    async def test_slowloris_on_vhost(self):
        """200 connections trickling one head byte per second are answered
        408 and closed by the head bound, while the vhost and the tunnel
        keep serving."""
        count = 200
        self.raise_fd_limit(count + 1024)
        relay = await Deployment().start(
            self, http=[("web", web_backend(self), "web.test")]
        )
        idle = await relay.idle_snapshot()

        slow = [Slowloris() for _ in range(count)]
        await open_many(self, relay.pid, idle.fds, relay.vhost_port, slow)
        ticks = [0]
        limit = HEAD_BOUND + LINGER_BOUND + 2 * SLACK  # ticks of 1 s

        def tick():
            ticks[0] += 1
            if ticks[0] > limit or all(s.closed_at is not None for s in slow):
                loop.stop()
                return
            for s in slow:
                s.tick()

        loop = LoopingCall(tick)
        looping = loop.start(1.0)
        self.addCleanup(lambda: loop.stop() if loop.running else None)

        # A few bytes in: the server now holds 200 partial heads.
        await poll_until(lambda: ticks[0] >= 3, lambda: "no tick", 10)
        under = relay.snapshot()
        web_time = await web_check(self, relay.vhost_port)
        echo_time = await echo_check(self, relay.tcp_port)
        self.assertEqual(
            sum(s.closed_at is not None for s in slow),
            0,
            "slow heads were closed before the head bound",
        )

        lifetimes = await within(
            defer.gatherResults([s.closed for s in slow]),
            HEAD_BOUND + LINGER_BOUND + 2 * SLACK,
        )
        await within(looping, 5)
        after = await fds_back_to(self, relay.pid, idle.fds, SLACK)

        answered = [s.eof_at - s.connected_at for s in slow if s.eof_at is not None]
        # Per slow connection: a transport, an h11 connection holding at
        # most ~40 head bytes, a timer (a few KiB); 32 KiB each is the bound.
        bound = count * 32 * KIB
        self.report(
            "slowloris",
            idle,
            under,
            after,
            bound,
            head_sent=f"{slow[0].sent} bytes",
            answered_408_after=f"{min(answered):.2f}-{max(answered):.2f}s"
            if answered
            else "never",
            closed_after=f"{min(lifetimes):.2f}-{max(lifetimes):.2f}s",
            web_during=f"{web_time * 1000:.0f}ms",
            echo_during=f"{echo_time * 1000:.0f}ms",
        )
        self.assertEqual(
            [s.received.split(b"\r\n", 1)[0] for s in slow],
            [b"HTTP/1.1 408 Request Timeout"] * count,
        )
        self.assertLess(under.rss - idle.rss, bound)
        self.assertGreaterEqual(min(lifetimes), HEAD_BOUND - 1)
        self.assertLessEqual(max(lifetimes), HEAD_BOUND + LINGER_BOUND + SLACK)

    @async_test
    async def test_yamux_client_that_never_reads(self):
        """A logged-in yamux client whose work streams get user data but
        which never reads costs the server far less than its windows allow,
        other clients keep working, and the keepalive ends it."""
        streams = 32
        keepalive = 2  # server's tcp_mux_keepalive_interval (seconds)
        ping_bound = 10  # YamuxSession keepalive_timeout
        relay = await Deployment().start(
            self, server_extra=f"tcp_mux_keepalive_interval = {keepalive}\n"
        )
        idle = await relay.idle_snapshot()

        abuser = Abuser()
        endpoint = TCP4ClientEndpoint(
            reactor, "127.0.0.1", relay.server.port, timeout=10
        )
        await within(endpoint.connect(Factory.forProtocol(lambda: abuser)))

        def close_abuser():
            abuser.transport.abortConnection()
            return within(abuser.when_closed(), 10)

        self.addCleanup(close_abuser)
        abuse_port = await within(abuser.registered)

        users = [PushingUser(limit=32 * MIB) for _ in range(streams)]
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", abuse_port, timeout=10)
        await within(
            defer.gatherResults(
                [endpoint.connect(Factory.forProtocol(lambda u=u: u)) for u in users]
            ),
            20,
        )
        self.addCleanup(close_all, users)
        await within(abuser.when_started(streams), 20)

        abuser.stop_reading()
        stopped_at = time.monotonic()
        for user in users:
            user.pusher.start()
        sent = await stalled(
            [u.pusher for u in users], lambda: str(relay.snapshot()), bound=20
        )
        stall_time = time.monotonic() - stopped_at
        under = relay.snapshot()
        echo_time = await echo_check(self, relay.tcp_port)
        self.assertEqual(
            sum(u.closed.called for u in users),
            0,
            "users were closed before the keepalive bound",
        )

        await within(
            defer.gatherResults([u.closed for u in users]),
            keepalive + ping_bound + SLACK,
        )
        ended_after = time.monotonic() - stopped_at
        after = await fds_back_to(self, relay.pid, idle.fds, SLACK)
        await relay.server.process.wait_for("yamux keepalive timeout")

        # The protocol lets the server send each stream a 6 MiB window
        # (frp's; 192 MiB for 32 streams) that the abuser never reads.
        # labrelay pauses a user as soon as its stream holds data back, so
        # it keeps about one 64 KiB read per stream plus its transport
        # buffer: the bound is 256 KiB per stream plus 8 MiB.
        window_bound = streams * 6 * MIB
        bound = streams * 256 * KIB + 8 * MIB
        self.report(
            "non-reading yamux client",
            idle,
            under,
            after,
            bound,
            streams=streams,
            users_sent=f"{sent / MIB:.1f} MiB",
            stalled_after=f"{stall_time:.2f}s",
            window_bound=f"{window_bound / MIB:.0f} MiB",
            echo_during=f"{echo_time * 1000:.0f}ms",
            dropped_after=f"{ended_after:.2f}s",
        )
        self.assertLess(under.rss - idle.rss, bound)

    @async_test
    async def test_vhost_user_that_never_reads(self):
        """A vhost user who never reads a 256 MiB response holds the server
        to about one yamux window, other vhost and tcp users are served, and
        cancelling frees everything."""
        bulk = Factory.forProtocol(BulkBackend)
        bulk.answering = defer.Deferred()
        relay = await Deployment().start(
            self,
            http=[
                ("web", web_backend(self), "web.test"),
                ("bulk", listen(self, bulk), "bulk.test"),
            ],
        )
        idle = await relay.idle_snapshot()

        user = StalledHttpUser("bulk.test")
        endpoint = TCP4ClientEndpoint(
            reactor, "127.0.0.1", relay.vhost_port, timeout=10
        )
        await within(endpoint.connect(Factory.forProtocol(lambda: user)))
        self.addCleanup(close_all, [user])
        backend = await within(bulk.answering)
        started = time.monotonic()
        sent = await stalled([backend.pusher], lambda: str(relay.snapshot()), bound=30)
        stall_time = time.monotonic() - started
        under = relay.snapshot()
        web_time = await web_check(self, relay.vhost_port)
        echo_time = await echo_check(self, relay.tcp_port)
        self.assertFalse(user.closed.called)

        user.transport.abortConnection()
        cancelled_at = time.monotonic()
        await within(backend.closed, 10)
        freed_after = time.monotonic() - cancelled_at
        after = await fds_back_to(self, relay.pid, idle.fds, SLACK)

        # A stalled stream buffers at most its 6 MiB receive window in the
        # server, plus the user's transport buffer; 12 MiB is the bound.
        bound = 12 * MIB
        self.report(
            "vhost non-reader",
            idle,
            under,
            after,
            bound,
            backend_sent=f"{sent / MIB:.1f} MiB",
            stalled_after=f"{stall_time:.2f}s",
            web_during=f"{web_time * 1000:.0f}ms",
            echo_during=f"{echo_time * 1000:.0f}ms",
            backend_closed_after_cancel=f"{freed_after:.2f}s",
        )
        self.assertLess(under.rss - idle.rss, bound)
