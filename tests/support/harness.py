"""
In-process test harness: a real labrelay server and real clients in the
test's reactor, on 127.0.0.1, with echo backends and user connections.

Every wait is on an event, bounded by :func:`within`.
"""

import functools

from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import LoopingCall
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from zope.interface import implementer

from labrelay.client.service import RelayClient
from labrelay.client_tap import build_endpoint
from labrelay.config import load_client_config, parse_client_config, parse_server_config
from labrelay.server.service import RelayServer
from labrelay.tls import client_tls_options, server_tls_options

from .formats import in_format

TOKEN = "harness-token"


def async_test(f):
    """Run an ``async def`` test method under trial."""

    @functools.wraps(f)
    def wrapper(self, *args, **kwargs):
        return defer.ensureDeferred(f(self, *args, **kwargs))

    return wrapper


def within(d, seconds=10, what="event"):
    """*d*, failing with TimeoutError if it has not fired in *seconds*."""
    d = defer.ensureDeferred(d) if not isinstance(d, defer.Deferred) else d
    return d.addTimeout(seconds, reactor)


@implementer(IHalfCloseableProtocol)
class Echo(Protocol):
    """Echoes everything; closes once the peer has ended its input."""

    def dataReceived(self, data):
        self.transport.write(data)

    def readConnectionLost(self):
        self.transport.loseConnection()

    def writeConnectionLost(self):
        pass


class _Collecting:
    """Keeps every received byte in ``received``; ``wait_for(size)`` fires
    once that many have arrived.  Subclasses call :meth:`collect`."""

    def collect(self, data):
        self.received += data
        still = []
        for size, d in self._waiting:
            if len(self.received) >= size:
                d.callback(bytes(self.received))
            else:
                still.append((size, d))
        self._waiting = still

    def wait_for(self, size):
        """A Deferred firing once *size* bytes have arrived."""
        if len(self.received) >= size:
            return defer.succeed(bytes(self.received))
        d = defer.Deferred()
        self._waiting.append((size, d))
        return d


@implementer(IHalfCloseableProtocol)
class UserClient(_Collecting, Protocol):
    """A user of a tunnel: collects what it receives, can half-close."""

    def __init__(self):
        self.received = bytearray()
        self.closed = defer.Deferred()
        self.eof = defer.Deferred()
        self._waiting = []  # (size, Deferred)

    def dataReceived(self, data):
        self.collect(data)

    def readConnectionLost(self):
        if not self.eof.called:
            self.eof.callback(bytes(self.received))
        # the peer is done; whether or not we still write, stop here
        self.transport.loseConnection()

    def writeConnectionLost(self):
        pass

    def connectionLost(self, reason):
        if not self.eof.called:
            self.eof.callback(bytes(self.received))
        self.closed.callback(bytes(self.received))


def listen(testcase, factory):
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    testcase.addCleanup(port.stopListening)
    return port.getHost().port


def echo_server(testcase):
    """Start an echo backend; return its port."""
    return listen(testcase, Factory.forProtocol(Echo))


async def connect_user(testcase, port):
    """Connect a UserClient to 127.0.0.1:*port*."""
    return await connect_protocol(testcase, port, UserClient())


async def connect_protocol(testcase, port, user):
    """Connect *user* (a protocol with a ``closed`` Deferred) to
    127.0.0.1:*port*; the cleanup aborts it and waits until it is gone."""
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=5)
    await within(endpoint.connect(Factory.forProtocol(lambda: user)))

    def close():
        if user.transport.connected:
            user.transport.abortConnection()
        return within(user.closed)

    testcase.addCleanup(close)
    return user


class Relay:
    """A labrelay server in this process."""

    def __init__(self, testcase, extra="", mux=True, tls_options=None):
        text = (
            "[common]\nbind_addr = 127.0.0.1\nbind_port = 7000\n"
            f"token = {TOKEN}\ntcp_mux = {str(mux).lower()}\n" + extra
        )
        self.config = parse_server_config(text, source="frps.ini")
        self.server = RelayServer(
            self.config,
            reactor,
            tls_options or server_tls_options(),
            listen="tcp:0:interface=127.0.0.1",
        )
        self.testcase = testcase

    async def start(self):
        self.server.startService()
        self.testcase.addCleanup(self.stop)
        port = await within(self.server.when_listening())
        self.port = port.getHost().port
        return self

    def stop(self):
        if self.server.running:
            return self.server.stopService()


class Client:
    """A labrelay client in this process."""

    def __init__(
        self,
        testcase,
        relay_port,
        proxies="",
        extra="",
        mux=True,
        tls=False,
        token=TOKEN,
        fmt="ini",
    ):
        text = (
            "[common]\nserver_addr = 127.0.0.1\n"
            f"server_port = {relay_port}\ntoken = {token}\n"
            f"tcp_mux = {str(mux).lower()}\n"
            f"tls_enable = {str(tls).lower()}\n" + extra + "\n" + proxies
        )
        text, source = in_format(text, "frpc.ini", fmt)
        self.config = parse_client_config(text, source=source)
        tls_options = None
        if self.config.tls_enable:
            tls_options = client_tls_options(
                self.config.tls_server_name or self.config.server_addr,
                self.config.tls_trusted_ca_file,
                self.config.tls_cert_file,
                self.config.tls_key_file,
            )
        self.client = RelayClient(
            self.config,
            reactor,
            build_endpoint(reactor, self.config, tls_options),
            exit_on_fatal=False,
        )
        self.testcase = testcase

    async def start(self):
        self.client.startService()
        self.testcase.addCleanup(self.stop)
        return self

    async def running(self, name):
        """Wait until proxy *name* is registered; return its remote port."""
        state = await within(self.client.when_proxy_status(name, "running"))
        return int(state.remote_addr.rsplit(":", 1)[1])

    def stop(self):
        if self.client.running:
            return self.client.stopService()


def tcp_proxy(name, local_port, remote_port=0, **extra):
    lines = [
        f"[{name}]",
        "type = tcp",
        "local_ip = 127.0.0.1",
        f"local_port = {local_port}",
        f"remote_port = {remote_port}",
    ]
    lines += [f"{k} = {v}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


class LogCapture:
    """
    The formatted text of every log event emitted while a test runs, from
    the moment this is created until the test's cleanup.
    """

    def __init__(self, testcase):
        self.events = []  # (LogLevel or None, text, has_failure)
        self._waiting = []  # (substrings, Deferred)
        globalLogPublisher.addObserver(self._observe)
        testcase.addCleanup(globalLogPublisher.removeObserver, self._observe)

    def _observe(self, event):
        text = formatEvent(event)
        self.events.append((event.get("log_level"), text, "log_failure" in event))
        still = []
        for substrings, d in self._waiting:
            if d.called:
                continue  # timed out (cancelled) meanwhile
            if all(s in text for s in substrings):
                d.callback(text)
            else:
                still.append((substrings, d))
        self._waiting = still

    def mark(self) -> int:
        """A position; :meth:`lines` can start from it."""
        return len(self.events)

    def lines(self, *substrings, since=0, min_level=LogLevel.info):
        """Lines at *min_level* or above containing every one of *substrings*."""
        return [
            text
            for level, text, _ in self.events[since:]
            if level is not None
            and level >= min_level
            and all(s in text for s in substrings)
        ]

    def failures(self, since=0):
        """Lines that carried a traceback (log_failure)."""
        return [text for _, text, failure in self.events[since:] if failure]

    def when_logged(self, *substrings, since=0):
        """A Deferred firing with the first line (from *since*) containing
        every one of *substrings*."""
        for _, text, _ in self.events[since:]:
            if all(s in text for s in substrings):
                return defer.succeed(text)
        d = defer.Deferred()
        self._waiting.append((substrings, d))
        return d


class RecordingEcho(_Collecting, Echo):
    """An echo backend connection that also keeps what it receives."""

    def __init__(self):
        self.received = bytearray()
        self.ended = defer.Deferred()  # fires with every byte received
        self._waiting = []  # (size, Deferred)

    def dataReceived(self, data):
        self.collect(data)
        super().dataReceived(data)

    def _end(self):
        if not self.ended.called:
            self.ended.callback(bytes(self.received))

    def readConnectionLost(self):
        self._end()
        super().readConnectionLost()

    def connectionLost(self, reason):
        self._end()


def recording_echo_server(testcase):
    """
    Start a :class:`RecordingEcho` backend; return ``(port, queue)`` where
    ``queue.get()`` gives each accepted connection, in order.
    """
    queue = defer.DeferredQueue()

    def accepted():
        connection = RecordingEcho()
        queue.put(connection)
        return connection

    return listen(testcase, Factory.forProtocol(accepted)), queue


def wait_until(predicate, interval=0.01):
    """A Deferred firing once *predicate()* holds, for states that have
    no event of their own (bound it with :func:`within`; cancelling it
    stops the polling)."""

    def check():
        if predicate():
            loop.stop()

    loop = LoopingCall(check)
    result = defer.Deferred(lambda _: loop.stop() if loop.running else None)
    loop.start(interval).addCallback(
        lambda _: None if result.called else result.callback(None)
    )
    return result


def file_client(testcase, path, admin=False):
    """A started RelayClient run from the config file *path* (as the tap
    builds it), with an admin API on a free port when *admin*."""
    config = load_client_config(path)
    client = RelayClient(
        config,
        reactor,
        build_endpoint(reactor, config, None),
        exit_on_fatal=False,
        config_path=path,
        admin_listen="tcp:0:interface=127.0.0.1" if admin else None,
    )
    client.startService()

    def stop():
        if client.running:
            return client.stopService()

    testcase.addCleanup(stop)
    return client


async def running_port(client, name):
    """Wait until proxy *name* runs; its remote port."""
    state = await within(client.when_proxy_status(name, "running"))
    return int(state.remote_addr.rsplit(":", 1)[1])
