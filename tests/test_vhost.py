# -*- test-case-name: tests.test_vhost -*-
"""
The HTTP vhost end to end: a real server with vhost_http_port, real
clients with ``type = http`` proxies, HTTP backends and users on 127.0.0.1,
with tcp_mux on and off.
"""

import base64
import hashlib
import json
import os
import random
import struct

import h11
from twisted.internet import defer, reactor
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site
from zope.interface import implementer

from labrelay.config import parse_server_config
from labrelay.errors import ProxyError
from labrelay.protocol import messages
from labrelay.server.vhost.headers import (basic_auth, response_headers,
                                           rewrite_request_headers,
                                           upgrade_type)
from labrelay.server.service import RelayServer
from labrelay.server.vhost import NOT_FOUND_PAGE, HttpProxy, Vhost
from labrelay.tracking import ConnectionSet
from labrelay.server.vhost.routes import RouteTable
from labrelay.tls import server_tls_options

from .harness import (TOKEN, Client, Relay, async_test, connect_protocol,
                      connect_user, listen, within)

SUBDOMAIN_HOST = "web.example.test"


# -- the relay, clients and proxies --------------------------------------------

class VhostRelay:
    """A labrelay server with an HTTP vhost, both on port 0."""

    def __init__(self, testcase, extra="", mux=True,
                 subdomain_host=SUBDOMAIN_HOST):
        text = ("[common]\nbind_addr = 127.0.0.1\nbind_port = 7000\n"
                f"token = {TOKEN}\ntcp_mux = {str(mux).lower()}\n"
                "vhost_http_port = 8080\n"
                f"subdomain_host = {subdomain_host}\n" + extra)
        self.config = parse_server_config(text, source="frps.ini")
        self.server = RelayServer(
            self.config, reactor, server_tls_options(),
            listen="tcp:0:interface=127.0.0.1",
            vhost_listen="tcp:0:interface=127.0.0.1")
        self.vhost = self.server.vhost
        self.testcase = testcase

    async def start(self):
        self.server.startService()
        self.testcase.addCleanup(self.stop)
        port = await within(self.server.when_listening())
        self.port = port.getHost().port
        http = await within(self.server.when_vhost_listening())
        self.http_port = http.getHost().port
        return self

    def stop(self):
        if self.server.running:
            return self.server.stopService()


def http_proxy(name, local_port, **options):
    """An frpc.ini ``type = http`` section; option names with ``-`` are
    passed as ``header_X_From`` -> ``header_X-From``."""
    lines = [f"[{name}]", "type = http", "local_ip = 127.0.0.1",
             f"local_port = {local_port}"]
    for key, value in options.items():
        if key.startswith("header_"):
            key = "header_" + key[len("header_"):].replace("_", "-")
        lines.append(f"{key} = {value}")
    return "\n".join(lines) + "\n"


async def start_client(testcase, relay, proxies, names, extra="", mux=True,
                       tls=False):
    """A client with *proxies*; waits until every one of *names* runs."""
    client = await Client(testcase, relay.port, proxies, extra, mux=mux,
                          tls=tls).start()
    for name in names:
        await within(client.client.when_proxy_status(name, "running"))
    return client


# -- backends ------------------------------------------------------------------

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
        info = {"backend": self.name, "method": request.method.decode(),
                "uri": request.uri.decode(), "headers": headers,
                "body_len": len(body),
                "body_sha": hashlib.sha256(body).hexdigest()}
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
    port = reactor.listenTCP(0, Factory.forProtocol(Protocol),
                             interface="127.0.0.1")
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


# -- WebSocket (RFC 6455), the least needed for an echo -------------------------

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def ws_accept(key: bytes) -> bytes:
    return base64.b64encode(hashlib.sha1(key + WS_GUID).digest())


def ws_frame(opcode: int, payload: bytes, mask: bytes = b"") -> bytes:
    """One final frame; masked when *mask* (4 bytes) is given."""
    head = bytes([0x80 | opcode])
    bit = 0x80 if mask else 0
    n = len(payload)
    if n < 126:
        head += bytes([bit | n])
    elif n < 65536:
        head += bytes([bit | 126]) + struct.pack(">H", n)
    else:
        head += bytes([bit | 127]) + struct.pack(">Q", n)
    if mask:
        head += mask
        payload = _xor(payload, mask)
    return head + payload


def _xor(payload: bytes, mask: bytes) -> bytes:
    n = len(payload)
    if not n:
        return b""
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big")
            ^ int.from_bytes(key, "big")).to_bytes(n, "big")


def ws_parse(buf: bytes):
    """(opcode, payload, rest) of the first complete frame, or None."""
    if len(buf) < 2:
        return None
    opcode, masked, n, i = buf[0] & 0x0F, buf[1] & 0x80, buf[1] & 0x7F, 2
    if n == 126:
        if len(buf) < 4:
            return None
        n, i = struct.unpack(">H", buf[2:4])[0], 4
    elif n == 127:
        if len(buf) < 10:
            return None
        n, i = struct.unpack(">Q", buf[2:10])[0], 10
    mask = b""
    if masked:
        mask, i = buf[i:i + 4], i + 4
    if len(buf) < i + n:
        return None
    payload = buf[i:i + n]
    if masked:
        payload = _xor(payload, mask)
    return opcode, payload, buf[i + n:]


class WsEcho(Protocol):
    """A WebSocket server that echoes every data frame."""

    def connectionMade(self):
        self.buf = b""
        self.upgraded = False

    def dataReceived(self, data):
        self.buf += data
        if not self.upgraded:
            if b"\r\n\r\n" not in self.buf:
                return
            head, self.buf = self.buf.split(b"\r\n\r\n", 1)
            fields = dict(line.split(b":", 1) for line in head.split(b"\r\n")[1:])
            fields = {k.strip().lower(): v.strip() for k, v in fields.items()}
            self.transport.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
                + ws_accept(fields[b"sec-websocket-key"]) + b"\r\n\r\n")
            self.upgraded = True
        while True:
            frame = ws_parse(self.buf)
            if frame is None:
                return
            opcode, payload, self.buf = frame
            if opcode == 8:
                self.transport.write(ws_frame(8, payload))
                self.transport.loseConnection()
                return
            self.transport.write(ws_frame(opcode, payload))


class WsUser(Protocol):
    """Collects bytes; hands out the 101 head, then frames."""

    def __init__(self):
        self.buf = b""
        self.closed = defer.Deferred()
        self._waiting = None

    def dataReceived(self, data):
        self.buf += data
        self._check()

    def connectionLost(self, reason):
        self.closed.callback(None)

    def _check(self):
        if self._waiting is None:
            return
        test, d = self._waiting
        result = test()
        if result is not None:
            self._waiting = None
            d.callback(result)

    def _wait(self, test):
        d = defer.Deferred()
        self._waiting = (test, d)
        self._check()
        return within(d, 30)

    def head(self):
        def test():
            if b"\r\n\r\n" in self.buf:
                head, self.buf = self.buf.split(b"\r\n\r\n", 1)
                return head
        return self._wait(test)

    def frame(self):
        def test():
            frame = ws_parse(self.buf)
            if frame is not None:
                self.buf = frame[2]
                return frame[:2]
        return self._wait(test)


# -- streaming without buffering ---------------------------------------------------

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
            self.transport.write(BLOCK[offset:offset + n])
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

    def __init__(self, transport, total, every=4 * MiB, pause=0.02,
                 on_read=lambda: None):
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
            self.call = reactor.callLater(self.pause,
                                          self.transport.resumeProducing)

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
            length = int([line.split(b":", 1)[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:")][0])
            self.reader = SlowReader(self.transport, length,
                                     on_read=self.on_read)
            self.reader.done.addCallback(self._answer)
        if data:
            self.reader.feed(data)

    def _answer(self, digest):
        self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 64\r\n\r\n"
                             + digest.encode())
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
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n"
                                 b"\r\n" % self.total)
            self.writer = PatternWriter(self.transport, self.total,
                                        self.on_write)
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
        self.reader = SlowReader(self.transport, self.total,
                                 on_read=self.on_read)

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


async def raw_user(testcase, port, protocol):
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=5)
    await within(endpoint.connect(Factory.forProtocol(lambda: protocol)))

    def close():
        if protocol.transport.connected:
            protocol.transport.abortConnection()
        return within(protocol.closed)

    testcase.addCleanup(close)
    return protocol


# -- an HTTP user --------------------------------------------------------------

class Reply:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers    # lower-case name -> last value (str)
        self.raw_headers = []     # (name, value) in order
        self.body = body

    def json(self):
        return json.loads(self.body)


class HttpUser(Protocol):
    """A keep-alive HTTP/1.1 client on one connection (h11)."""

    def __init__(self):
        self.http = h11.Connection(h11.CLIENT)
        self.raw = bytearray()
        self.closed = defer.Deferred()
        self._reply = None
        self._body = []
        self._waiting = None
        self.informational = []

    def dataReceived(self, data):
        self.raw += data
        self.http.receive_data(data)
        self._pump()

    def connectionLost(self, reason):
        if self._waiting is not None:
            d, self._waiting = self._waiting, None
            d.errback(reason)
        self.closed.callback(bytes(self.raw))

    def _pump(self):
        while self._waiting is not None:
            event = self.http.next_event()
            if event in (h11.NEED_DATA, h11.PAUSED):
                return
            if isinstance(event, h11.InformationalResponse):
                self.informational.append(event)
            elif isinstance(event, h11.Response):
                self._reply = Reply(
                    event.status_code,
                    {k.decode().lower(): v.decode()
                     for k, v in event.headers.raw_items()}, b"")
                self._reply.raw_headers = list(event.headers.raw_items())
            elif isinstance(event, h11.Data):
                self._body.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                reply, self._reply = self._reply, None
                reply.body = b"".join(self._body)
                self._body = []
                d, self._waiting = self._waiting, None
                if self.http.our_state is h11.DONE and \
                        self.http.their_state is h11.DONE:
                    self.http.start_next_cycle()
                d.callback(reply)

    def request(self, host, target="/", method="GET", headers=(), body=None):
        """Send one request; a Deferred firing with its :class:`Reply`."""
        hdrs = [("Host", host)] + list(headers)
        if body is not None and not any(
                k.lower() in ("content-length", "transfer-encoding")
                for k, _ in hdrs):
            hdrs.append(("Content-Length", str(len(body))))
        self._waiting = d = defer.Deferred()
        self.transport.write(self.http.send(h11.Request(
            method=method, target=target, headers=hdrs)))
        if body:
            self.transport.write(self.http.send(h11.Data(data=body)))
        self.transport.write(self.http.send(h11.EndOfMessage()))
        return within(d, 30)


async def http_user(testcase, port):
    return await connect_protocol(testcase, port, HttpUser())


async def get(testcase, relay, host, target="/", **kw):
    """One request on a new connection."""
    user = await http_user(testcase, relay.http_port)
    return await user.request(host, target, **kw)


def basic(user, password):
    raw = base64.b64encode(f"{user}:{password}".encode()).decode()
    return ("Authorization", f"Basic {raw}")


# -- tests ---------------------------------------------------------------------

class VhostMixin:
    mux = True
    tls = False
    timeout = 120

    async def relay(self, extra="", **kw):
        return await VhostRelay(self, extra, mux=self.mux, **kw).start()

    async def client(self, relay, proxies, names, extra=""):
        return await start_client(self, relay, proxies, names, extra,
                                  mux=self.mux, tls=self.tls)

    async def one_proxy(self, **options):
        relay = await self.relay()
        backend = web_backend(self, "alpha")
        client = await self.client(relay, http_proxy("web", backend,
                                                     **options), ["web"])
        return relay, client

    @async_test
    async def test_subdomain_get(self):
        """A subdomain routes to its backend with the forwarding headers set."""
        relay, client = await self.one_proxy(subdomain="jupyter")
        state = client.client.proxies["web"]
        self.assertEqual(state.remote_addr,
                         f"jupyter.{SUBDOMAIN_HOST}:{relay.http_port}")
        reply = await get(self, relay, f"jupyter.{SUBDOMAIN_HOST}",
                          "/lab?x=1", headers=[("Connection", "close")])
        self.assertEqual(reply.status, 200)
        info = reply.json()
        self.assertEqual((info["backend"], info["method"], info["uri"]),
                         ("alpha", "GET", "/lab?x=1"))
        headers = info["headers"]
        self.assertEqual(headers["host"], [f"jupyter.{SUBDOMAIN_HOST}"])
        self.assertEqual(headers["x-forwarded-for"], ["127.0.0.1"])
        self.assertEqual(headers["x-forwarded-host"],
                         [f"jupyter.{SUBDOMAIN_HOST}"])
        self.assertEqual(headers["x-forwarded-proto"], ["http"])
        self.assertEqual(headers["x-real-ip"], ["127.0.0.1"])
        self.assertNotIn("connection", headers)

    @async_test
    async def test_trailing_dot_host(self):
        """A Host with a trailing dot and a port reaches a subdomain whose
        subdomain_host is written with a trailing dot."""
        relay = await self.relay(subdomain_host=SUBDOMAIN_HOST + ".")
        backend = web_backend(self, "dot")
        await self.client(relay, http_proxy("web", backend,
                                            subdomain="jupyter"), ["web"])
        reply = await get(self, relay, f"jupyter.{SUBDOMAIN_HOST}.:"
                                       f"{relay.http_port}")
        self.assertEqual(reply.status, 200)
        self.assertEqual(reply.json()["backend"], "dot")

    @async_test
    async def test_two_trailing_dots_are_400(self):
        """One trailing dot is a host name's absolute form; two make no
        host name, even with a catch-all route: 400, never a route."""
        relay = await self.relay()
        backend = web_backend(self, "any")
        await self.client(relay, http_proxy("web", backend, subdomain="j",
                                            custom_domains="*"), ["web"])
        reply = await get(self, relay, f"j.{SUBDOMAIN_HOST}.")
        self.assertEqual(reply.status, 200)
        for host in (f"j.{SUBDOMAIN_HOST}..", f"j.{SUBDOMAIN_HOST}..:80",
                     ".."):
            reply = await get(self, relay, host)
            self.assertEqual(reply.status, 400, host)
            self.assertIn(b"trailing dot", reply.body)

    @async_test
    async def test_custom_domains_wildcard_and_star(self):
        """Exact, wildcard and catch-all domains route as frp's router."""
        relay = await self.relay()
        ports = {name: web_backend(self, name)
                 for name in ("exact", "wild", "star")}
        proxies = (http_proxy("exact", ports["exact"],
                              custom_domains="app.example.org")
                   + http_proxy("wild", ports["wild"],
                                custom_domains="*.example.org")
                   + http_proxy("star", ports["star"], custom_domains="*"))
        await self.client(relay, proxies, ["exact", "wild", "star"])
        user = await http_user(self, relay.http_port)
        for host, backend in (("APP.example.org", "exact"),
                              ("other.example.org:81", "wild"),
                              ("a.b.example.org", "wild"),
                              ("example.com", "star"),
                              ("app.example.org", "exact")):
            reply = await user.request(host)
            self.assertEqual((host, reply.json()["backend"]),
                             (host, backend))

    @async_test
    async def test_locations_longest_prefix(self):
        """The longest matching location prefix picks the proxy."""
        relay = await self.relay()
        root, api = web_backend(self, "root"), web_backend(self, "api")
        proxies = (http_proxy("root", root, custom_domains="h.example.org")
                   + http_proxy("api", api, custom_domains="h.example.org",
                                locations="/api,/rpc"))
        await self.client(relay, proxies, ["root", "api"])
        user = await http_user(self, relay.http_port)
        for path, backend in (("/api/v1", "api"), ("/apix", "api"),
                              ("/rpc", "api"), ("/", "root"),
                              ("/other/api", "root")):
            reply = await user.request("h.example.org", path)
            self.assertEqual((path, reply.json()["backend"]), (path, backend))

    @async_test
    async def test_route_by_http_user(self):
        """route_by_http_user sends that user's requests to its own proxy."""
        relay = await self.relay()
        alice, others = web_backend(self, "alice"), web_backend(self, "any")
        proxies = (http_proxy("alice", alice, custom_domains="u.example.org",
                              route_by_http_user="alice")
                   + http_proxy("any", others, custom_domains="u.example.org"))
        await self.client(relay, proxies, ["alice", "any"])
        user = await http_user(self, relay.http_port)
        reply = await user.request("u.example.org",
                                   headers=[basic("alice", "pw")])
        self.assertEqual(reply.json()["backend"], "alice")
        reply = await user.request("u.example.org",
                                   headers=[basic("bob", "pw")])
        self.assertEqual(reply.json()["backend"], "any")
        reply = await user.request("u.example.org")
        self.assertEqual(reply.json()["backend"], "any")

    @async_test
    async def test_basic_auth(self):
        """http_user/http_pwd answer 401 without the right credentials."""
        relay, _ = await self.one_proxy(custom_domains="auth.example.org",
                                        http_user="ann", http_pwd="s3cret")
        user = await http_user(self, relay.http_port)
        for headers in ([], [basic("ann", "wrong")], [basic("bob", "s3cret")],
                        [("Authorization", "Basic !!!")]):
            reply = await user.request("auth.example.org", headers=headers)
            self.assertEqual(reply.status, 401)
            self.assertEqual(reply.headers["www-authenticate"],
                             'Basic realm="Restricted"')
            self.assertEqual(reply.body, b"Unauthorized\n")
        reply = await user.request("auth.example.org",
                                   headers=[basic("ann", "s3cret")])
        self.assertEqual(reply.status, 200)
        self.assertEqual(reply.json()["headers"]["authorization"],
                         [basic("ann", "s3cret")[1]])

    @async_test
    async def test_host_rewrite_and_headers(self):
        """host_header_rewrite replaces Host; header_* sets request headers;
        X-Forwarded-For is appended to."""
        relay, _ = await self.one_proxy(
            custom_domains="rw.example.org", host_header_rewrite="inner.local",
            header_X_From_Where="frp", header_X_Replaced="relay")
        reply = await get(self, relay, "rw.example.org:8080", headers=[
            ("X-Replaced", "user"), ("X-Forwarded-For", "2.2.2.2"),
            ("X-Forwarded-Host", "spoofed")])
        headers = reply.json()["headers"]
        self.assertEqual(headers["host"], ["inner.local"])
        self.assertEqual(headers["x-from-where"], ["frp"])
        self.assertEqual(headers["x-replaced"], ["relay"])
        self.assertEqual(headers["x-forwarded-for"], ["2.2.2.2, 127.0.0.1"])
        self.assertEqual(headers["x-forwarded-host"], ["rw.example.org:8080"])

    @async_test
    async def test_two_clients_two_subdomains_one_connection(self):
        """One keep-alive user connection switches Host between requests and
        reaches two backends behind two clients."""
        relay = await self.relay()
        for name in ("alpha", "beta"):
            backend = web_backend(self, name)
            await self.client(relay, http_proxy(name, backend, subdomain=name),
                              [f"{name}.{name}"], extra=f"user = {name}\n")
        user = await http_user(self, relay.http_port)
        for name in ("alpha", "beta", "alpha", "beta"):
            reply = await user.request(f"{name}.{SUBDOMAIN_HOST}",
                                       f"/{name}")
            info = reply.json()
            self.assertEqual((info["backend"], info["uri"]),
                             (name, f"/{name}"))
        self.assertTrue(user.transport.connected)

    @async_test
    async def test_not_found(self):
        """An unknown host gets the built-in Not Found page, keep-alive."""
        relay, _ = await self.one_proxy(subdomain="known")
        user = await http_user(self, relay.http_port)
        reply = await user.request("unknown.example.org")
        self.assertEqual(reply.status, 404)
        self.assertEqual(reply.headers["content-type"],
                         "text/html; charset=utf-8")
        self.assertIn(b"<title>Not Found</title>", reply.body)
        self.assertEqual(reply.body, NOT_FOUND_PAGE)
        reply = await user.request(f"known.{SUBDOMAIN_HOST}")
        self.assertEqual(reply.status, 200)

    @async_test
    async def test_custom_not_found_page(self):
        """custom_404_page is served for unknown hosts."""
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"<html><title>Not Found</title>our own page</html>\n")
        relay = await self.relay(f"custom_404_page = {path}\n")
        reply = await get(self, relay, "nobody.example.org", method="HEAD")
        self.assertEqual(reply.status, 404)
        self.assertEqual(reply.body, b"")
        reply = await get(self, relay, "nobody.example.org")
        self.assertEqual(reply.body,
                         b"<html><title>Not Found</title>our own page</html>\n")
        self.assertEqual(reply.headers["content-type"],
                         "text/html; charset=utf-8")

    @async_test
    async def test_local_service_down(self):
        """A client whose local service refuses answers 502, and the user
        connection goes on serving."""
        relay = await self.relay()
        dead = await within(closed_port(self))
        alive = web_backend(self, "alive")
        await self.client(relay, http_proxy("dead", dead, subdomain="dead")
                          + http_proxy("alive", alive, subdomain="alive"),
                          ["dead", "alive"])
        user = await http_user(self, relay.http_port)
        reply = await user.request(f"dead.{SUBDOMAIN_HOST}")
        self.assertEqual(reply.status, 502)
        reply = await user.request(f"alive.{SUBDOMAIN_HOST}")
        self.assertEqual(reply.json()["backend"], "alive")

    @async_test
    async def test_no_work_connection(self):
        """No work connection within user_conn_timeout answers 504."""
        relay = await self.relay("user_conn_timeout = 1\n")
        backend = web_backend(self, "idle")
        client = await self.client(relay, http_proxy("web", backend,
                                                     subdomain="idle"),
                                   ["web"], extra="pool_count = 0\n")
        # the client stops answering ReqWorkConn
        client.client.open_work_connection = lambda: None
        reply = await get(self, relay, f"idle.{SUBDOMAIN_HOST}")
        self.assertEqual(reply.status, 504)

    @async_test
    async def test_encryption_and_compression(self):
        """An http proxy with use_encryption and use_compression relays a
        request body and a response byte-exact."""
        relay, _ = await self.one_proxy(subdomain="enc", use_encryption="true",
                                        use_compression="true")
        body = b"compressible " * 20000 + os.urandom(50000)
        reply = await get(self, relay, f"enc.{SUBDOMAIN_HOST}", "/post",
                          method="POST", body=body)
        info = reply.json()
        self.assertEqual((info["body_len"], info["body_sha"]),
                         (len(body), hashlib.sha256(body).hexdigest()))

    @async_test
    async def test_chunked_both_ways(self):
        """A chunked request body arrives whole; a chunked response streams
        through whole."""
        relay = await self.relay()
        inspect, chunks = web_backend(self, "in"), chunked_backend(self)
        await self.client(relay, http_proxy("in", inspect, subdomain="in")
                          + http_proxy("out", chunks, subdomain="out"),
                          ["in", "out"])
        user = await http_user(self, relay.http_port)
        body = os.urandom(200000)
        user._waiting = d = defer.Deferred()
        http = user.http
        user.transport.write(http.send(h11.Request(
            method="POST", target="/up", headers=[
                ("Host", f"in.{SUBDOMAIN_HOST}"),
                ("Transfer-Encoding", "chunked")])))
        for i in range(0, len(body), 30000):
            user.transport.write(http.send(h11.Data(data=body[i:i + 30000])))
        user.transport.write(http.send(h11.EndOfMessage()))
        info = (await within(d)).json()
        self.assertEqual((info["body_len"], info["body_sha"]),
                         (len(body), hashlib.sha256(body).hexdigest()))
        reply = await user.request(f"out.{SUBDOMAIN_HOST}")
        self.assertEqual(reply.headers.get("transfer-encoding"), "chunked")
        self.assertEqual(reply.body, b"".join(Chunks.parts))

    @async_test
    async def test_conflict(self):
        """A second proxy on the same domain is refused with frp's error."""
        relay = await self.relay()
        backend = web_backend(self, "first")
        await self.client(relay, http_proxy("first", backend, subdomain="same"),
                          ["a.first"], extra="user = a\n")
        second = await Client(self, relay.port,
                              http_proxy("second", backend, subdomain="same"),
                              "user = b\n", mux=self.mux,
                              tls=self.tls).start()
        state = await within(second.client.when_proxy_status(
            "b.second", "start error"))
        self.assertEqual(state.error, "router config conflict")

    @async_test
    async def test_closed_proxy_frees_routes(self):
        """When the client goes, its hosts answer 404 and can be taken again."""
        relay = await self.relay()
        backend = web_backend(self, "gone")
        client = await self.client(relay, http_proxy("web", backend,
                                                     subdomain="gone"),
                                   ["web"])
        reply = await get(self, relay, f"gone.{SUBDOMAIN_HOST}")
        self.assertEqual(reply.status, 200)
        await within(client.client.stopService())
        for _ in range(200):
            if not relay.server.registry.controls:
                break
            await within(deferLater0(), 1)
        self.assertEqual(len(relay.vhost.routes), 0)
        reply = await get(self, relay, f"gone.{SUBDOMAIN_HOST}")
        self.assertEqual(reply.status, 404)
        await self.client(relay, http_proxy("web", backend, subdomain="gone"),
                          ["web"])
        reply = await get(self, relay, f"gone.{SUBDOMAIN_HOST}")
        self.assertEqual(reply.status, 200)

    @async_test
    async def test_head_too_large(self):
        """A request head over 64 KiB is answered 431 and closed."""
        relay, _ = await self.one_proxy(subdomain="big")
        user = await connect_user(self, relay.http_port)
        user.transport.write(b"GET / HTTP/1.1\r\nHost: big." +
                             SUBDOMAIN_HOST.encode() + b"\r\nX-Big: " +
                             b"a" * (70 * 1024) + b"\r\n\r\n")
        received = await within(user.closed)
        self.assertTrue(received.startswith(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"), received)
        self.assertIn(b"\r\nConnection: close\r\n", received)

    @async_test
    async def test_missing_host(self):
        """A request without Host (HTTP/1.1 or 1.0) is answered 400 and closed."""
        relay, _ = await self.one_proxy(subdomain="any")
        for request in (b"GET / HTTP/1.1\r\n\r\n",
                        b"GET / HTTP/1.0\r\n\r\n"):
            user = await connect_user(self, relay.http_port)
            user.transport.write(request)
            received = await within(user.closed)
            self.assertTrue(received.startswith(b"HTTP/1.1 400 "), received)
            self.assertIn(b"\r\nConnection: close\r\n", received)

    @async_test
    async def test_garbage_does_not_disturb_others(self):
        """Garbage on the vhost port gets 400; other users are still served."""
        relay, _ = await self.one_proxy(subdomain="fine")
        for garbage in (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc" +
                        os.urandom(300),
                        b"GET / HTTP/1.1\r\nHost: fine\r\nno colon here"
                        b"\r\n\r\n",
                        b"BREW /pot HTCPCP/1.0\r\n\r\n"):
            user = await connect_user(self, relay.http_port)
            user.transport.write(garbage)
            reply = await get(self, relay, f"fine.{SUBDOMAIN_HOST}")
            self.assertEqual(reply.status, 200)
            received = await within(user.closed)
            self.assertTrue(received.startswith(b"HTTP/1.1 400 "), received)

    @async_test
    async def test_slowloris(self):
        """A head sent too slowly is answered 408 and closed; an idle
        keep-alive connection is closed quietly."""
        relay, _ = await self.one_proxy(subdomain="slow")
        relay.vhost.head_timeout = 0.3
        user = await connect_user(self, relay.http_port)
        user.transport.write(b"GET / HTTP/1.1\r\nHost: slow.")
        received = await within(user.closed, 5)
        self.assertTrue(received.startswith(b"HTTP/1.1 408 "), received)
        idle = await http_user(self, relay.http_port)
        reply = await idle.request(f"slow.{SUBDOMAIN_HOST}")
        self.assertEqual(reply.status, 200)
        raw = bytes(idle.raw)
        self.assertEqual(await within(idle.closed, 5), raw)

    @async_test
    async def test_response_timeout_and_event_stream(self):
        """No response head within vhost_http_timeout answers 504; a response
        that has started may stay quiet longer (server-sent events)."""
        relay = await self.relay("vhost_http_timeout = 1\n")
        resource = Stall()
        self.addCleanup(resource.cancel)
        backend = listen(self, Site(resource))
        await self.client(relay, http_proxy("slow", backend, subdomain="slow"),
                          ["slow"])
        reply = await get(self, relay, f"slow.{SUBDOMAIN_HOST}", "/stall")
        self.assertEqual(reply.status, 504)
        reply = await get(self, relay, f"slow.{SUBDOMAIN_HOST}", "/sse")
        self.assertEqual(reply.status, 200)
        self.assertEqual(reply.body, b"data: one\n\ndata: two\n\n")

    @async_test
    async def test_websocket_echo(self):
        """A WebSocket upgrade gets the backend's 101, then frames flow raw
        both ways."""
        await self.websocket_echo()

    @async_test
    async def test_websocket_echo_encrypted(self):
        """The upgraded connection keeps the work connection's encryption
        and compression streams going."""
        await self.websocket_echo(use_encryption="true",
                                  use_compression="true")

    async def websocket_echo(self, **options):
        relay = await self.relay()
        backend = listen(self, Factory.forProtocol(WsEcho))
        await self.client(relay, http_proxy("ws", backend, subdomain="ws",
                                            **options), ["ws"])
        user = await raw_user(self, relay.http_port, WsUser())
        key = base64.b64encode(os.urandom(16))
        user.transport.write(
            b"GET /socket HTTP/1.1\r\nHost: ws." + SUBDOMAIN_HOST.encode()
            + b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13"
            b"\r\n\r\n" + ws_frame(1, b"hello", b"abcd"))
        head = await user.head()
        lines = head.split(b"\r\n")
        self.assertEqual(lines[0], b"HTTP/1.1 101 Switching Protocols")
        self.assertIn(b"Sec-WebSocket-Accept: " + ws_accept(key), lines)
        self.assertIn(b"Upgrade: websocket", lines)
        self.assertEqual(await user.frame(), (1, b"hello"))
        big = os.urandom(300000)
        user.transport.write(ws_frame(2, big, b"wxyz"))
        self.assertEqual(await user.frame(), (2, big))
        user.transport.write(ws_frame(8, b"", b"0000"))
        self.assertEqual(await user.frame(), (8, b""))
        await within(user.closed)

    @async_test
    async def test_upload_64mib_streamed(self):
        """64 MiB up to a slow backend arrive byte-exact while the relay
        holds only a bounded amount of them."""
        relay = await self.relay()
        total = 64 * MiB
        peak = [0]

        def sample():
            peak[0] = max(peak[0], relay.vhost.buffered_bytes())

        sinks = []

        def sink():
            sinks.append(SinkBackend(sample))
            return sinks[-1]

        backend = listen(self, Factory.forProtocol(sink))
        await self.client(relay, http_proxy("up", backend, subdomain="up"),
                          ["up"])
        user = await http_user(self, relay.http_port)
        user._waiting = d = defer.Deferred()
        user.transport.write(user.http.send(h11.Request(
            method="PUT", target="/big", headers=[
                ("Host", f"up.{SUBDOMAIN_HOST}"),
                ("Content-Length", str(total))])))
        user.http.send(h11.Data(data=b"\0" * total))  # only for h11's count
        user.http.send(h11.EndOfMessage())
        writer = PatternWriter(user.transport, total, sample)
        writer.start()
        reply = await within(d, 90)
        self.assertEqual(reply.body.decode(), pattern_sha(total))
        self.assertLess(peak[0], 16 * MiB)
        self.assertGreater(peak[0], 0)

    @async_test
    async def test_download_64mib_streamed(self):
        """64 MiB down to a slow user arrive byte-exact while the relay
        holds only a bounded amount of them."""
        relay = await self.relay()
        total = 64 * MiB
        peak = [0]

        def sample():
            peak[0] = max(peak[0], relay.vhost.buffered_bytes())

        backend = listen(self, Factory.forProtocol(
            lambda: SourceBackend(total, sample)))
        await self.client(relay, http_proxy("down", backend,
                                            subdomain="down"), ["down"])
        user = await raw_user(self, relay.http_port,
                              StreamUser(total, sample))
        user.transport.write(b"GET /big HTTP/1.1\r\nHost: down." +
                             SUBDOMAIN_HOST.encode() + b"\r\n\r\n")
        digest = await within(user.reader.done, 90)
        self.assertEqual(user.status, b"HTTP/1.1 200 OK")
        self.assertEqual(digest, pattern_sha(total))
        self.assertLess(peak[0], 16 * MiB)
        self.assertGreater(peak[0], 0)

    @async_test
    async def test_pipelined_requests(self):
        """Requests written back to back, to two hosts, are answered in
        order; a HEAD answer carries no body; Connection: close closes."""
        relay = await self.relay()
        proxies = "".join(http_proxy(name, web_backend(self, name),
                                     subdomain=name)
                          for name in ("alpha", "beta"))
        await self.client(relay, proxies, ["alpha", "beta"])
        user = await connect_user(self, relay.http_port)
        sent = [("GET", "/1", "alpha", []), ("HEAD", "/2", "beta", []),
                ("GET", "/3", "beta", [("Connection", "close")])]
        for method, target, name, extra in sent:
            user.transport.write(
                f"{method} {target} HTTP/1.1\r\nHost: {name}."
                f"{SUBDOMAIN_HOST}\r\n".encode()
                + b"".join(f"{k}: {v}\r\n".encode() for k, v in extra)
                + b"\r\n")
        received = await within(user.closed)
        parser = h11.Connection(h11.CLIENT)
        parser.receive_data(received)
        parser.receive_data(b"")
        answers = []
        for method, target, name, extra in sent:
            parser.send(h11.Request(method=method, target=target, headers=[
                ("Host", name)] + extra))
            parser.send(h11.EndOfMessage())
            body = b""
            while True:
                event = parser.next_event()
                if isinstance(event, h11.Response):
                    status = event.status_code
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    break
            answers.append((status, json.loads(body)["uri"] if body else ""))
            if parser.our_state is h11.DONE:
                parser.start_next_cycle()
        self.assertEqual(answers, [(200, "/1"), (200, ""), (200, "/3")])


def deferLater0():
    d = defer.Deferred()
    reactor.callLater(0.01, d.callback, None)
    return d


class MuxTests(VhostMixin, TestCase):
    mux = True


class NoMuxTests(VhostMixin, TestCase):
    mux = False


class TlsNoMuxTests(VhostMixin, TestCase):
    """Work connections are TLS connections of their own."""
    mux = False
    tls = True


class RewriteTests(SynchronousTestCase):
    """The request and response header rewriting, without sockets."""

    def rewrite(self, headers, **kw):
        kw.setdefault("client_ip", "127.0.0.1")
        kw.setdefault("original_host", b"a.example.org")
        return rewrite_request_headers(headers, **kw)

    def test_vector_request(self):
        """The captured frps request: Connection: close dropped, forwarding
        headers appended in order, user headers kept in order."""
        out = self.rewrite([(b"Host", b"jupyter.web.example.test"),
                            (b"User-Agent", b"labrelay-vector/1"),
                            (b"Accept", b"*/*"), (b"Connection", b"close")],
                           original_host=b"jupyter.web.example.test")
        self.assertEqual(out, [
            (b"Host", b"jupyter.web.example.test"),
            (b"User-Agent", b"labrelay-vector/1"), (b"Accept", b"*/*"),
            (b"X-Forwarded-For", b"127.0.0.1"),
            (b"X-Forwarded-Host", b"jupyter.web.example.test"),
            (b"X-Forwarded-Proto", b"http"), (b"X-Real-IP", b"127.0.0.1")])

    def test_hop_by_hop_removed(self):
        """Hop-by-hop headers and those named in Connection are removed;
        body framing headers are never forwarded as received: the framing
        given (h11's reading) takes the place of the first of them."""
        out = self.rewrite([
            (b"Host", b"h"), (b"Connection", b"keep-alive, X-Private"),
            (b"Keep-Alive", b"timeout=5"), (b"X-Private", b"1"),
            (b"Proxy-Authorization", b"Basic eDp5"), (b"TE", b"trailers"),
            (b"Upgrade", b"websocket"), (b"Transfer-Encoding", b"chunked"),
            (b"Content-Length", b"3"), (b"Authorization", b"Basic eDp5")],
            framing=[(b"Transfer-Encoding", b"chunked")])
        names = [name for name, _ in out]
        for gone in (b"Connection", b"Keep-Alive", b"X-Private", b"TE",
                     b"Proxy-Authorization", b"Upgrade", b"Content-Length"):
            self.assertNotIn(gone, names)
        self.assertEqual(out[1:3], [(b"Transfer-Encoding", b"chunked"),
                                    (b"Authorization", b"Basic eDp5")])
        self.assertEqual(names.count(b"Transfer-Encoding"), 1)
        # without a framing given, none is sent
        out = self.rewrite([(b"Host", b"h"), (b"Content-Length", b"3")])
        self.assertNotIn(b"Content-Length", [name for name, _ in out])

    def test_upgrade_kept(self):
        """An upgrade request keeps Upgrade with Connection: Upgrade."""
        headers = [(b"Host", b"h"), (b"Connection", b"keep-alive, Upgrade"),
                   (b"Upgrade", b"websocket")]
        kind = upgrade_type(headers)
        self.assertEqual(kind, b"websocket")
        out = self.rewrite(headers, upgrade=kind)
        self.assertIn((b"Connection", b"Upgrade"), out)
        self.assertIn((b"Upgrade", b"websocket"), out)
        self.assertIsNone(upgrade_type([(b"Upgrade", b"websocket")]))

    def test_forwarded_for_appended_and_headers_set(self):
        """X-Forwarded-For joins earlier values; header_* replaces any
        user value; Host rewrite applies; spoofed X-Real-IP is replaced."""
        out = self.rewrite(
            [(b"Host", b"a.example.org:81"), (b"X-Forwarded-For", b"1.1.1.1"),
             (b"X-Forwarded-For", b"2.2.2.2"), (b"x-from-where", b"user"),
             (b"X-Real-IP", b"6.6.6.6")],
            client_ip="10.0.0.9", original_host=b"a.example.org:81",
            host_rewrite="inner", set_headers=[("X-From-Where", "frp"),
                                               ("Host", "ignored")])
        self.assertEqual(out, [
            (b"Host", b"inner"),
            (b"X-Forwarded-For", b"1.1.1.1, 2.2.2.2, 10.0.0.9"),
            (b"X-Forwarded-Host", b"a.example.org:81"),
            (b"X-Forwarded-Proto", b"http"), (b"X-Real-IP", b"10.0.0.9"),
            (b"X-From-Where", b"frp")])

    def test_response_headers(self):
        """Responses lose hop-by-hop headers except on a protocol switch;
        their framing is the one h11 read, written canonically (chunked
        wins over Content-Length)."""
        headers = [(b"Content-Type", b"text/plain"),
                   (b"Connection", b"keep-alive"), (b"Keep-Alive", b"x"),
                   (b"Transfer-Encoding", b"chunked")]
        self.assertEqual(response_headers(headers),
                         [(b"Content-Type", b"text/plain"),
                          (b"Transfer-Encoding", b"chunked")])
        both = [(b"Content-Length", b"007"), (b"X", b"1"),
                (b"Transfer-Encoding", b"chunked")]
        self.assertEqual(response_headers(both),
                         [(b"Transfer-Encoding", b"chunked"), (b"X", b"1")])
        self.assertEqual(response_headers([(b"content-length", b"007")]),
                         [(b"Content-Length", b"7")])
        switch = [(b"Upgrade", b"websocket"), (b"Connection", b"Upgrade")]
        self.assertEqual(response_headers(switch, True), switch)

    def test_basic_auth(self):
        """Basic credentials decode; anything else gives no user."""
        self.assertEqual(basic_auth(b"Basic " + base64.b64encode(b"a:b:c")),
                         ("a", "b:c"))
        self.assertEqual(basic_auth(b"basic " + base64.b64encode(b"x:")),
                         ("x", ""))
        for bad in (None, b"", b"Bearer abc", b"Basic !!", b"Basic " +
                    base64.b64encode(b"nocolon")):
            self.assertEqual(basic_auth(bad), ("", ""))


class _Stub:
    def __init__(self, **kw):
        self.__dict__.update(kw)


class RegistrationTests(SynchronousTestCase):
    """NewProxy validation and NewProxyResp remote_addr of http proxies."""

    def proxy(self, subdomain_host="web.example.test", port=8080, **fields):
        config = parse_server_config(
            f"[common]\nvhost_http_port = {port}\n"
            f"subdomain_host = {subdomain_host}\n")
        server = _Stub(config=config)
        vhost = _Stub(routes=RouteTable(), port=port)
        message = messages.NewProxy(proxy_name="p", proxy_type="http",
                                    **fields)
        return HttpProxy(server, None, message, vhost)

    def test_remote_addr(self):
        """remote_addr joins domain:port for every domain, in order."""
        proxy = self.proxy(custom_domains=["A.example.org", ""],
                           subdomain="Jup")
        self.assertEqual(proxy.start(), "a.example.org:8080,"
                                        "jup.web.example.test:8080")

    def test_remote_addr_port_80(self):
        """Port 80 is not written."""
        proxy = self.proxy(port=80, custom_domains=["a.example.org"])
        self.assertEqual(proxy.start(), "a.example.org")

    def test_locations_register_each(self):
        """Each domain x location is a route; close removes them all."""
        proxy = self.proxy(custom_domains=["a.example.org", "b.example.org"],
                           locations=["/x", "/y"])
        proxy.start()
        self.assertEqual(len(proxy.vhost.routes), 4)
        proxy.close()
        self.assertEqual(len(proxy.vhost.routes), 0)

    def assert_refused(self, text, **kw):
        with self.assertRaises(ProxyError) as caught:
            self.proxy(**kw).start()
        self.assertIn(text, str(caught.exception))

    def test_refusals(self):
        """Missing domains, a subdomain without subdomain_host, a bad
        subdomain and a custom domain under subdomain_host are refused."""
        self.assert_refused("at least one", custom_domains=[""])
        self.assert_refused("subdomain is not supported", subdomain_host="",
                            subdomain="x")
        self.assert_refused("'.' and '*'", subdomain="a.b")
        self.assert_refused("'.' and '*'", subdomain="*")
        self.assert_refused("should not belong to subdomain host",
                            custom_domains=["a.web.example.test"])


class VhostServiceTests(TestCase):
    """The vhost as part of the server's start-up and proxy types."""

    @async_test
    async def test_http_needs_vhost_port(self):
        """Without vhost_http_port an http proxy is refused and says why."""
        relay = await Relay(self).start()
        self.assertIsNone(relay.server.vhost)
        client = await Client(self, relay.port,
                              http_proxy("web", 1, subdomain="x")).start()
        state = await within(client.client.when_proxy_status(
            "web", "start error"))
        self.assertIn("vhost_http_port", state.error)

    def test_bind_failure_fails_startup(self):
        """A vhost port that cannot be bound stops start-up with one line."""
        taken = reactor.listenTCP(0, Factory.forProtocol(Protocol),
                                  interface="127.0.0.1")
        self.addCleanup(taken.stopListening)
        number = taken.getHost().port
        config = parse_server_config(
            "[common]\nbind_addr = 127.0.0.1\n"
            f"vhost_http_port = {number}\n")
        server = RelayServer(config, reactor, server_tls_options(),
                             listen="tcp:0:interface=127.0.0.1")
        with self.assertRaises(SystemExit) as caught:
            server.privilegedStartService()
        self.assertIn(f"cannot listen on 127.0.0.1:{number}",
                      str(caught.exception))
        return server._listener.stopService()


class FakeWork:
    """A pooled work connection on a StringTransport."""

    def __init__(self):
        self.transport = StringTransport()
        self.sent = []
        self.alive = True
        self.sink = None

    def send(self, message):
        self.sent.append(message)

    def take_early_data(self):
        return b""


class ExchangeWiringTests(SynchronousTestCase):
    """One vhost connection and its exchange on memory transports."""

    def setUp(self):
        self.clock = Clock()
        config = parse_server_config(
            "[common]\nvhost_http_port = 80\nsubdomain_host = "
            f"{SUBDOMAIN_HOST}\ntoken = t\n")
        server = _Stub(config=config, clock=self.clock,
                       connections=ConnectionSet())
        self.vhost = Vhost(server)
        self.works = []

        def get():
            self.works.append(FakeWork())
            return defer.succeed(self.works[-1])

        control = _Stub(login=_Stub(pool_count=1), closed=False,
                        pool=_Stub(get=get))
        self.proxy = self.vhost.create_proxy(control, messages.NewProxy(
            proxy_name="jupyter", proxy_type="http", subdomain="jupyter"))
        self.assertEqual(self.proxy.start(), f"jupyter.{SUBDOMAIN_HOST}")
        self.user = StringTransport(
            peerAddress=IPv4Address("TCP", "127.0.0.1", 5555))
        self.connection = self.vhost.factory.buildProtocol(None)
        self.connection.makeConnection(self.user)

    def tearDown(self):
        self.connection.connectionLost(None)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_vector_request_and_producers(self):
        """The request frps would write (plus X-Real-IP), a source-only
        StartWorkConn, producers cross-registered for the exchange only, and
        keep-alive afterwards."""
        self.connection.dataReceived(
            b"GET /lab?x=1 HTTP/1.1\r\nHost: jupyter.web.example.test\r\n"
            b"User-Agent: labrelay-vector/1\r\nAccept: */*\r\n"
            b"Connection: keep-alive\r\n\r\n")
        [work] = self.works
        [start] = work.sent
        self.assertEqual(
            (start.proxy_name, start.src_addr, start.src_port, start.dst_addr,
             start.dst_port), ("jupyter", "127.0.0.1", 5555, "", 0))
        self.assertEqual(work.transport.value(), (
            b"GET /lab?x=1 HTTP/1.1\r\nHost: jupyter.web.example.test\r\n"
            b"User-Agent: labrelay-vector/1\r\nAccept: */*\r\n"
            b"X-Forwarded-For: 127.0.0.1\r\n"
            b"X-Forwarded-Host: jupyter.web.example.test\r\n"
            b"X-Forwarded-Proto: http\r\nX-Real-IP: 127.0.0.1\r\n\r\n"))
        # the user's transport full: the work connection stops reading
        self.user.producer.pauseProducing()
        self.assertEqual(work.transport.producerState, "paused")
        self.user.producer.resumeProducing()
        self.assertEqual(work.transport.producerState, "producing")
        # the work connection full: the user stops reading
        work.transport.producer.pauseProducing()
        self.assertEqual(self.user.producerState, "paused")
        work.transport.producer.resumeProducing()
        self.assertEqual(self.user.producerState, "producing")
        work.sink.forward(work, b"HTTP/1.1 200 OK\r\nContent-Length: 2"
                                  b"\r\nKeep-Alive: timeout=5\r\n\r\nok")
        self.assertEqual(self.user.value(), b"HTTP/1.1 200 OK\r\n"
                         b"Content-Length: 2\r\n\r\nok")
        self.assertIsNone(self.user.producer)
        self.assertIsNone(work.transport.producer)
        # a clean keep-alive exchange: the work connection is kept idle
        self.assertFalse(work.transport.disconnecting)
        self.assertEqual(self.proxy.idle_work_count, 1)
        self.assertFalse(self.user.disconnecting)
        self.assertEqual((self.proxy.total_connections,
                          self.proxy.active_splices), (1, 0))
        # the next request reuses it: no new work connection, no second
        # StartWorkConn
        work.transport.clear()
        self.connection.dataReceived(
            b"GET /2 HTTP/1.1\r\nHost: jupyter.web.example.test\r\n\r\n")
        self.assertEqual((len(self.works), len(work.sent)), (1, 1))
        self.assertTrue(work.transport.value().startswith(b"GET /2 "))
        work.sink.forward(work, b"HTTP/1.1 204 No Content\r\n\r\n")
        self.assertEqual(self.proxy.idle_work_count, 1)
        self.proxy.close()   # drops idle work connections
        self.assertEqual(self.proxy.idle_work_count, 0)
        self.assertTrue(work.transport.disconnecting)

    def test_response_head_timeout(self):
        """No response head within vhost_http_timeout: 504, work closed."""
        self.connection.dataReceived(
            b"GET / HTTP/1.1\r\nHost: jupyter.web.example.test\r\n\r\n")
        [work] = self.works
        self.clock.advance(self.vhost.response_timeout - 1)
        self.assertEqual(self.user.value(), b"")
        self.clock.advance(1)
        self.assertTrue(self.user.value().startswith(
            b"HTTP/1.1 504 Gateway Timeout\r\n"))
        self.assertTrue(work.transport.disconnecting)

    def test_backend_closes_before_answering(self):
        """A work connection lost before a response head answers 502."""
        self.connection.dataReceived(
            b"GET / HTTP/1.1\r\nHost: jupyter.web.example.test\r\n\r\n")
        [work] = self.works
        work.sink.connection_lost(work, None)
        self.assertTrue(self.user.value().startswith(
            b"HTTP/1.1 502 Bad Gateway\r\n"))
        self.assertFalse(self.user.disconnecting)

    def test_cut_response_closes_user(self):
        """A response cut after its head closes the user connection."""
        self.connection.dataReceived(
            b"GET / HTTP/1.1\r\nHost: jupyter.web.example.test\r\n\r\n")
        [work] = self.works
        work.sink.forward(work, b"HTTP/1.1 200 OK\r\nContent-Length: 9"
                                  b"\r\n\r\npart")
        work.sink.end_of_input(work)
        self.assertTrue(self.user.value().endswith(b"\r\n\r\npart"))
        self.assertTrue(self.user.disconnecting)

    def test_head_timeout(self):
        """A head not complete within head_timeout is answered 408."""
        self.connection.dataReceived(b"GET / HTTP/1.1\r\nHost: jup")
        self.clock.advance(self.vhost.head_timeout)
        self.assertTrue(self.user.value().startswith(
            b"HTTP/1.1 408 Request Timeout\r\n"))
        self.assertTrue(self.user.disconnecting)
        self.assertEqual(self.works, [])

    def test_upgrade_traffic(self):
        """After a 101 the raw splice goes on counting the same connection:
        the proxy's traffic includes the exchange's bytes and the splice's,
        once each, while open and after."""
        request = (b"GET /ws HTTP/1.1\r\nHost: jupyter.web.example.test\r\n"
                   b"Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
        self.connection.dataReceived(request)
        [work] = self.works
        exchange = work.sink
        head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n" \
               b"Connection: Upgrade\r\n\r\n"
        work.sink.forward(work, head)
        self.assertIsNot(work.sink, exchange)
        self.assertIs(self.connection.sink, work.sink)
        sent = len(work.transport.value())
        self.assertEqual(self.proxy.traffic(), (sent, len(head)))
        self.connection.dataReceived(b"ping")
        work.sink.forward(work, b"pong!")
        self.assertEqual(self.proxy.traffic(),
                         (sent + 4, len(head) + 5))
        self.assertEqual((self.proxy.total_connections,
                          self.proxy.active_splices), (1, 1))
        work.sink.connection_lost(work, None)
        self.connection.connectionLost(None)
        self.assertEqual(self.proxy.traffic(),
                         (sent + 4, len(head) + 5))
        self.assertEqual((self.proxy.total_connections,
                          self.proxy.active_splices), (1, 0))
