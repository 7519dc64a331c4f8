"""
Backends behind http proxies, on 127.0.0.1: twisted.web sites that echo
what they received as JSON, stream chunked bodies or stall, and raw HTTP
backends and users that write and read a fixed pattern as fast as a slow
peer allows (streaming producers), to show that nothing buffers whole
bodies.
"""

import hashlib
import json
import random

from twisted.internet import defer, reactor
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site
from zope.interface import implementer

from .harness import listen


class Inspect(Resource):
    """Answers every request with JSON describing what it received."""

    isLeaf = True

    def __init__(self, name):
        super().__init__()
        self.name = name

    def render(self, request):
        body = request.content.read()
        headers = {}
        for key, values in request.requestHeaders.getAllRawHeaders():
            headers[key.decode().lower()] = [v.decode() for v in values]
        info = {
            "backend": self.name,
            "method": request.method.decode(),
            "uri": request.uri.decode(),
            "headers": headers,
            "body_len": len(body),
            "body_sha": hashlib.sha256(body).hexdigest(),
        }
        request.setHeader(b"content-type", b"application/json")
        return json.dumps(info).encode()


class Chunks(Resource):
    """Streams a body in several writes (no Content-Length: chunked)."""

    isLeaf = True
    parts = [b"first part\n", b"x" * 70000, b"\nlast part\n"]

    def render(self, request):
        for part in self.parts:
            request.write(part)
        request.finish()
        return NOT_DONE_YET


def web_backend(testcase, name):
    """A twisted.web backend; returns its port."""
    root = Inspect(name)
    site = Site(root)
    site.displayTracebacks = False
    return listen(testcase, site)


def chunked_backend(testcase):
    return listen(testcase, Site(Chunks()))


def closed_port(testcase):
    """A port on which nothing listens."""
    port = reactor.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")
    number = port.getHost().port
    return port.stopListening().addCallback(lambda _: number)


class Stall(Resource):
    """/stall never answers; /sse answers at once and sends a second event
    after *gap* seconds."""

    isLeaf = True
    gap = 1.5

    def __init__(self):
        super().__init__()
        self.calls = []

    def render(self, request):
        if request.path == b"/sse":
            request.setHeader(b"content-type", b"text/event-stream")
            request.write(b"data: one\n\n")
            call = reactor.callLater(self.gap, self._second, request)
            self.calls.append(call)
            request.notifyFinish().addErrback(lambda _: None)
        return NOT_DONE_YET

    def _second(self, request):
        if not request.finished and not request._disconnected:
            request.write(b"data: two\n\n")
            request.finish()

    def cancel(self):
        for call in self.calls:
            if call.active():
                call.cancel()


MiB = 1024 * 1024


BLOCK = random.Random(6455).randbytes(MiB)


def pattern_sha(total: int) -> str:
    h = hashlib.sha256()
    for _ in range(total // MiB):
        h.update(BLOCK)
    return h.hexdigest()


@implementer(IPushProducer)
class PatternWriter:
    """Writes *total* bytes of BLOCK to *transport*, only while it is not
    full (a streaming producer); calls *on_write* after each write."""

    chunk = 64 * 1024

    def __init__(self, transport, total, on_write=lambda: None):
        self.transport = transport
        self.total = total
        self.sent = 0
        self.paused = False
        self.on_write = on_write
        self.done = defer.Deferred()

    def start(self):
        self.transport.registerProducer(self, True)
        self.resumeProducing()

    def resumeProducing(self):
        self.paused = False
        while not self.paused and self.sent < self.total:
            offset = self.sent % MiB
            n = min(self.chunk, self.total - self.sent)
            self.sent += n
            self.transport.write(BLOCK[offset : offset + n])
            self.on_write()
        if self.sent >= self.total and not self.done.called:
            self.transport.unregisterProducer()
            self.done.callback(self.sent)

    def pauseProducing(self):
        self.paused = True

    def stopProducing(self):
        self.paused = True


class SlowReader:
    """Reads a byte stream, hashing it, and stops reading for *pause*
    seconds after every *every* bytes: a slow consumer."""

    def __init__(
        self, transport, total, every=4 * MiB, pause=0.02, on_read=lambda: None
    ):
        self.transport = transport
        self.total = total
        self.got = 0
        self.sha = hashlib.sha256()
        self.every = every
        self.next_pause = every
        self.pause = pause
        self.on_read = on_read
        self.done = defer.Deferred()
        self.call = None

    def feed(self, data):
        self.got += len(data)
        self.sha.update(data)
        self.on_read()
        if self.got >= self.total:
            if not self.done.called:
                self.done.callback(self.sha.hexdigest())
        elif self.got >= self.next_pause:
            self.next_pause += self.every
            self.transport.pauseProducing()
            self.call = reactor.callLater(self.pause, self.transport.resumeProducing)

    def cancel(self):
        if self.call is not None and self.call.active():
            self.call.cancel()


class SinkBackend(Protocol):
    """Receives one request with a Content-Length body, slowly; answers
    with the body's sha256."""

    def __init__(self, on_read):
        self.on_read = on_read
        self.head = b""
        self.reader = None

    def dataReceived(self, data):
        if self.reader is None:
            self.head += data
            if b"\r\n\r\n" not in self.head:
                return
            head, data = self.head.split(b"\r\n\r\n", 1)
            length = int(
                [
                    line.split(b":", 1)[1]
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ][0]
            )
            self.reader = SlowReader(self.transport, length, on_read=self.on_read)
            self.reader.done.addCallback(self._answer)
        if data:
            self.reader.feed(data)

    def _answer(self, digest):
        self.transport.write(
            b"HTTP/1.1 200 OK\r\nContent-Length: 64\r\n\r\n" + digest.encode()
        )
        return digest

    def connectionLost(self, reason):
        if self.reader is not None:
            self.reader.cancel()


class SourceBackend(Protocol):
    """Answers one request with *total* bytes of BLOCK (Content-Length)."""

    def __init__(self, total, on_write):
        self.total = total
        self.on_write = on_write
        self.head = b""
        self.writer = None

    def dataReceived(self, data):
        self.head += data
        if self.writer is None and b"\r\n\r\n" in self.head:
            self.transport.write(
                b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % self.total
            )
            self.writer = PatternWriter(self.transport, self.total, self.on_write)
            self.writer.start()


class StreamUser(Protocol):
    """Reads one response head, then feeds the body to a SlowReader."""

    def __init__(self, total, on_read):
        self.total = total
        self.on_read = on_read
        self.head = b""
        self.status = None
        self.reader = None
        self.closed = defer.Deferred()

    def connectionMade(self):
        self.reader = SlowReader(self.transport, self.total, on_read=self.on_read)

    def dataReceived(self, data):
        if self.status is None:
            self.head += data
            if b"\r\n\r\n" not in self.head:
                return
            head, data = self.head.split(b"\r\n\r\n", 1)
            self.status = head.split(b"\r\n", 1)[0]
            self.head = head
        if data:
            self.reader.feed(data)

    def connectionLost(self, reason):
        self.reader.cancel()
        self.closed.callback(None)
