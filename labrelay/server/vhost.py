# -*- test-case-name: tests.test_vhost -*-
"""
The HTTP virtual-host port of the server (frps ``vhost_http_port``): the
listener's factory and one HTTP/1.1 protocol per user connection.

Every request head on a connection is parsed with h11 (at most
:data:`MAX_HEAD` bytes, within :attr:`Vhost.head_timeout` seconds) and
routed on its own: a keep-alive connection may name another Host, and so
reach another proxy and client, with each request.  A routed request
becomes an :class:`~labrelay.server.http_proxy.HttpExchange` over one work
connection; this module answers what needs no backend: 400 (malformed, no
Host), 401/407 (``http_user``/``http_pwd``), 404 (no route: the built-in
page or ``custom_404_page``), 408 (head too slow), 431 (head too large),
and the 502/504 an exchange reports.

Before routing, the head as received is checked for ambiguous body
framing, and the request target is normalised
(:mod:`~labrelay.server.vhost_request`): a request whose framing another
parser could read otherwise is answered 400 and its connection closed
(nothing after it on the connection is read as a request); the routed
path is the normal one (dot segments, ``//`` and encoded unreserved
characters resolved), it is what the backend receives, and a path that a
lax backend could read as another route's is answered 400.  Log lines
write request fields with control characters escaped.

Reading is switched by a :class:`~labrelay.server.proxy_base.ReadGate`:
while waiting for a work connection, while the work connection's write
buffer is full, and while a pipelined request waits for the current
response.  Error answers on a connection whose request body was not read
end with a lingering close (FIN, then input is discarded until the peer
closes or :attr:`Vhost.linger_timeout`), so the peer reads the answer
instead of a reset.

Each request gets one access-log line (info, namespace
``labrelay.access``) when its response ends, in the combined log format
plus searchable fields::

    client_ip - user [time] "METHOD path HTTP/1.1" status bytes_sent
    "referer" "user-agent" host=... proxy=... duration_ms=...

``user`` is the basic-auth user name sent (``-`` without one), ``time``
when the request head arrived (UTC), ``bytes_sent`` the response body's
size, ``proxy`` the proxy that served it (``-`` when none did).  A protocol
switch is logged when it happens (101); a request whose user left before
any response is logged as 499; a refusal before a request line was parsed
(408, 400) as ``"-"``.  Request text is escaped as nginx does (``"``, ``\\``
and non-printable bytes as ``\\xHH``).
"""

import time
from http import HTTPStatus
from urllib.parse import urlsplit

import h11
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOProtocol

from ..logs import quote
from ..peers import describe, host_port
from ..relay import (RelayedProtocol, Splice, set_no_delay,
                     supports_half_close)
from .http_proxy import (HttpExchange, HttpProxy, basic_auth, body_framing,
                         header_value, rewrite_request_headers, upgrade_type)
from .proxy_base import ReadGate
from .vhost_request import BadRequest, framing_problem, route_target
from ..throttle import PASS
from .vhost_routes import RouteTable, request_host

#: Largest request head (request line + headers), as Go's default 1 MiB is
#: far more than any browser sends; beyond it: 431.
MAX_HEAD = 64 * 1024

#: Seconds a connection has to send a complete request head (slowloris),
#: and to stay idle between keep-alive requests.
HEAD_TIMEOUT = 30

#: Seconds a closing connection may keep sending before it is reset.
LINGER_TIMEOUT = 5

#: Idle work connections each http proxy keeps for its next requests, and
#: the seconds one may stay idle (as frp: Go's reverse proxy transport).
MAX_IDLE_WORK = 5
IDLE_WORK_TIMEOUT = 60

#: labrelay's page for a host (or path) that no proxy serves.
NOT_FOUND_PAGE = b"""<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
<title>Not Found</title>
<style>
  body { max-width: 36em; margin: 3em auto; padding: 0 1em;
         font-family: Tahoma, Verdana, Arial, sans-serif; color: #333; }
</style>
</head>
<body>
<h1>Nothing is published here.</h1>
<p>No service answers at this address right now. Check the address, or
try again once the service behind it is connected.</p>
<p><em>labrelay</em></p>
</body>
</html>
"""

#: Bytes a request line may start with (an HTTP method is a token); a TLS
#: ClientHello or other binary junk is refused at its first byte instead
#: of waiting for a line end that may never come.
_TOKEN_CHARS = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    b"!#$%&'*+-.^_`|~")

_TEXT = b"text/plain; charset=utf-8"
_HTML = b"text/html; charset=utf-8"

#: The access log's own namespace, so it can be filtered or routed apart
#: (a module-level Logger: as a class attribute it would take the class's).
_access_log = Logger(namespace="labrelay.access")

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep",
           "Oct", "Nov", "Dec")


def clf_escape(value, space: bool = False) -> str:
    """*value* (bytes or str) for a combined-log field: ``"``, ``\\`` and
    bytes outside 0x20-0x7e (and spaces too when *space*) become ``\\xHH``,
    as nginx writes them; ``-`` when empty."""
    if isinstance(value, str):
        value = value.encode("utf-8", "replace")
    if not value:
        return "-"
    out = []
    for byte in value:
        if byte == 0x22 or byte == 0x5c or byte < 0x20 or byte > 0x7e \
                or (space and byte == 0x20):
            out.append(f"\\x{byte:02X}")
        else:
            out.append(chr(byte))
    return "".join(out)


def clf_time(seconds: float) -> str:
    """``10/Oct/2000:13:55:36 +0000`` (UTC; month names not localised)."""
    t = time.gmtime(seconds)
    return (f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year:04d}:"
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000")


class AccessRecord:
    """What the access-log line of one request says, gathered as it goes."""

    __slots__ = ("started", "request", "referer", "user_agent", "host",
                 "user", "proxy", "status", "bytes_sent")

    def __init__(self, started: float, request=None):
        self.started = started
        self.request = "-" if request is None else clf_escape(request)
        self.referer = self.user_agent = self.host = b""
        self.user = ""
        self.proxy = "-"
        self.status = 0
        self.bytes_sent = 0

    @classmethod
    def of(cls, started: float, request) -> "AccessRecord":
        """The record of h11 *request*."""
        record = cls(started, b"%s %s HTTP/%s" % (
            request.method, request.target, request.http_version))
        headers = request.headers.raw_items()
        record.referer = header_value(headers, b"referer") or b""
        record.user_agent = header_value(headers, b"user-agent") or b""
        record.host = header_value(headers, b"host") or b""
        return record


def load_not_found_page(path: str, log=None) -> bytes:
    """The ``custom_404_page`` file, or the built-in page when there is none
    or it cannot be read (logged, as frps does)."""
    if not path:
        return NOT_FOUND_PAGE
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        if log is not None:
            log.warn("custom_404_page {path!r} cannot be read ({error}); "
                     "using the built-in page", path=path, error=e.strerror)
        return NOT_FOUND_PAGE


def write_buffered(transport) -> int:
    """
    Bytes written to *transport* and still held in this process (TCP
    transport buffer, TLS application buffer, yamux stream buffers).
    A diagnostic: it reads Twisted's private buffer attributes.
    """
    if transport is None:
        return 0
    if hasattr(transport, "send_buffered"):   # a yamux stream
        session = getattr(transport, "_session", None)
        return (transport.send_buffered + transport.receive_buffered
                + write_buffered(getattr(session, "transport", None)))
    if isinstance(transport, TLSMemoryBIOProtocol):
        held = sum(len(b) for b in getattr(transport, "_appSendBuffer", ()))
        return held + write_buffered(transport.transport)
    data = getattr(transport, "dataBuffer", None)
    if data is None:
        return 0
    return (len(data) - getattr(transport, "offset", 0)
            + getattr(transport, "_tempDataLen", 0))


class Vhost:
    """
    The HTTP vhost of a :class:`~labrelay.server.service.RelayServer`: its
    route table, its pages and timeouts, its live connections.

    :ivar port: the vhost port reported in NewProxyResp (the bound port once
        listening).
    """

    _log = Logger()

    def __init__(self, server):
        config = server.config
        self.server = server
        self.clock = server.clock
        self.routes = RouteTable()
        self.port = config.vhost_http_port
        self.response_timeout = config.vhost_http_timeout
        self.head_timeout = HEAD_TIMEOUT
        self.linger_timeout = LINGER_TIMEOUT
        self.max_idle_work = MAX_IDLE_WORK
        self.idle_work_timeout = IDLE_WORK_TIMEOUT
        self.not_found_page = load_not_found_page(config.custom_404_page,
                                                  self._log)
        self.connections = set()
        self.factory = VhostFactory(self)

    def create_proxy(self, control, message) -> HttpProxy:
        return HttpProxy(self.server, control, message, self)

    def buffered_bytes(self) -> int:
        """Bytes of HTTP traffic this process holds right now (diagnostic)."""
        return sum(c.buffered_bytes() for c in list(self.connections))


class VhostFactory(Factory):
    noisy = False   # no "Starting factory <... at 0x...>" lines

    def __init__(self, vhost):
        self.vhost = vhost

    def buildProtocol(self, addr):
        return VhostConnection(self.vhost)


class _AuthHeld:
    """Stands for the exchange while a request's credentials are held by
    the password throttle: it takes no body (the pump waits) and has no
    work connection."""

    accepts_body = False
    work = None

    def front_lost(self) -> None:
        """The user left while held: the throttle's answer is dropped."""


class VhostConnection(RelayedProtocol):
    """One user connection on the vhost port (see the module docstring)."""

    _log = Logger()

    def __init__(self, vhost):
        self.vhost = vhost
        self.clock = vhost.clock
        self.http = h11.Connection(h11.SERVER,
                                   max_incomplete_event_size=MAX_HEAD)
        self.peer = "?"
        self.client_ip = "-"
        self.gate = None
        self._exchange = None
        self._access = None   # the AccessRecord of the current request
        self._method = b""
        self._timer = None
        self._closing = False
        self._eof = False
        self._pumping = False
        self._pump_again = False
        # Bytes received since this cycle began waiting for a head: h11
        # limits only heads still incomplete, so the size of a head that
        # arrived whole is checked from this, and the head as received
        # (line endings, folding, repeated fields) is read from it.
        self._head = bytearray()
        self._head_started = False  # a non-CRLF byte of the head was seen
        self._auth_passed = None    # (request, proxy) the throttle passed

    # Twisted.

    def connectionMade(self):
        set_no_delay(self.transport)
        self.peer = describe(self.transport)
        self.client_ip = host_port(self.transport.getPeer())[0] or "-"
        self.gate = ReadGate(self.transport)
        self.vhost.connections.add(self)
        self.vhost.server.connections.add(self)
        self._start_timer(self.vhost.head_timeout, self._head_timed_out)

    def data_before_splice(self, data):
        if self._closing:
            return  # lingering close: discard
        if self.http.their_state is h11.IDLE:
            if not self._head_started:
                start = data.lstrip(b"\r\n")[:1]
                if start:
                    self._head_started = True
                    if start[0] not in _TOKEN_CHARS:
                        self._log.info("{peer}: not an HTTP request",
                                       peer=self.peer)
                        self._refuse(400, "not an HTTP request")
                        return
            self._head += data
        self.http.receive_data(data)
        self.pump()

    def eof_before_splice(self):
        if self._closing or self._eof:
            self.transport.loseConnection()
            return
        self._eof = True
        self.http.receive_data(b"")
        self.pump()

    def connection_ended(self, reason):
        self._cancel_timer()
        self._closing = True
        self.vhost.connections.discard(self)
        self.vhost.server.connections.remove(self)
        exchange, self._exchange = self._exchange, None
        if exchange is not None:
            exchange.front_lost()
        self._log_access(499)

    # The access log.

    def _log_access(self, status_if_none: int = 0) -> None:
        """Write the current request's access-log line (once)."""
        record, self._access = self._access, None
        if record is None:
            return
        status = record.status or status_if_none
        _access_log.info(
            '{client_ip} - {user} [{received}] "{request}" {status} '
            '{bytes_sent} "{referer}" "{user_agent}" host={host} '
            'proxy={proxy} duration_ms={duration_ms}',
            client_ip=self.client_ip,
            user=clf_escape(record.user, space=True),
            received=clf_time(record.started), request=record.request,
            status=status, bytes_sent=record.bytes_sent,
            referer=clf_escape(record.referer),
            user_agent=clf_escape(record.user_agent),
            host=quote(record.host.decode("latin-1")),
            proxy=quote(record.proxy),
            duration_ms=round((self.clock.seconds() - record.started)
                              * 1000))

    # Timers.

    def _start_timer(self, seconds, call) -> None:
        self._cancel_timer()
        self._timer = self.clock.callLater(seconds, call)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None

    def _head_timed_out(self) -> None:
        self._timer = None
        partial, _ = self.http.trailing_data
        if partial and self.http.their_state is h11.IDLE:
            self._log.info("{peer}: no complete request head within "
                           "{seconds}s; closing", peer=self.peer,
                           seconds=self.vhost.head_timeout)
            self._refuse(408, "request head too slow")
        else:
            self._close()

    # Reading requests.

    def pump(self) -> None:
        """Process the request events h11 can give now (re-entrant safe)."""
        if self._pumping:
            self._pump_again = True
            return
        self._pumping = True
        try:
            again = True
            while again:
                self._pump_again = False
                self._pump_once()
                again = self._pump_again
        finally:
            self._pumping = False

    def _pump_once(self) -> None:
        while not self._closing and self.splice is None:
            exchange = self._exchange
            if exchange is not None and not exchange.accepts_body:
                return
            try:
                event = self.http.next_event()
            except h11.RemoteProtocolError as e:
                self._bad_request(e)
                return
            if event is h11.NEED_DATA:
                return
            if event is h11.PAUSED:
                self.gate.pause("pipelined")
                return
            kind = type(event)
            if kind is h11.Request:
                self._cancel_timer()
                self._on_request(event)
            elif kind is h11.Data:
                if exchange is not None:
                    exchange.request_data(event.data)
            elif kind is h11.EndOfMessage:
                if exchange is not None:
                    exchange.request_end()
                elif self.http.our_state in (h11.DONE, h11.MUST_CLOSE):
                    self._after_response()
            elif kind is h11.ConnectionClosed:
                if self._exchange is None:
                    self._close()
                return

    def _bad_request(self, error) -> None:
        exchange, self._exchange = self._exchange, None
        if exchange is not None:
            exchange.front_lost()
        if self._eof:
            self._log.info("{peer}: request cut short; closing",
                           peer=self.peer)
            self._close()
            return
        status = error.error_status_hint or 400
        if status == 501:
            # h11's hint for a Transfer-Encoding other than chunked: the
            # body length is unknown, a 400 (RFC 9112 §6.1)
            status = 400
        self._log.info("{peer}: bad request ({status}): {error}",
                       peer=self.peer, status=status, error=error)
        if self.http.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            self._refuse(status, str(error) or HTTPStatus(status).phrase)
        else:
            self._close()

    def _on_request(self, request) -> None:
        self._method = request.method
        self._access = AccessRecord.of(self.clock.seconds(), request)
        head, self._head = self._head, bytearray()
        del head[len(head) - len(self.http.trailing_data[0]):]
        if len(head) > MAX_HEAD:
            self._log.info("{peer}: request head over {size} bytes",
                           peer=self.peer, size=MAX_HEAD)
            self._refuse(431, "request head too large")
            return
        problem = framing_problem(bytes(head), request.http_version)
        if problem is not None:
            self._log.info("{peer}: ambiguous request framing ({problem}); "
                           "closing", peer=self.peer, problem=problem)
            self._refuse(400, f"ambiguous request framing: {problem}")
            return
        headers = request.headers.raw_items()
        target = request.target
        host = header_value(headers, b"host")
        absolute = target[:7].lower() == b"http://" or \
            target[:8].lower() == b"https://"
        if absolute:
            host = urlsplit(target).netloc
            # the rest of the target as sent (query and any fragment too)
            rest = target[target.index(b"//") + 2 + len(host):]
            target = rest if rest.startswith(b"/") else b"/" + rest
            headers = [(n, host if n.lower() == b"host" else v)
                       for n, v in headers]
        if not host or not host.strip():
            self.respond(400, b"Bad Request: no Host header\n", close=True)
            return
        try:
            target, path, lenient = route_target(request.method, target)
        except BadRequest as e:
            self._log.info("{peer}: bad request target {target}: {error}",
                           peer=self.peer, target=clf_escape(request.target),
                           error=e)
            self.respond(400, f"Bad Request: {e}\n".encode())
            return
        credentials = None
        if absolute:
            credentials = header_value(headers, b"proxy-authorization")
        if not credentials:
            credentials = header_value(headers, b"authorization")
        user, password = basic_auth(credentials)
        self._access.user = user
        name = request_host(host.decode("latin-1"))
        if name.endswith("."):
            # "example.com." is the absolute form of example.com; a second
            # trailing dot makes no host name at all
            self.respond(400, b"Bad Request: invalid Host (more than one "
                              b"trailing dot)\n")
            return
        proxy = self.vhost.routes.lookup(name, path, user)
        if lenient != path and \
                self.vhost.routes.lookup(name, lenient, user) is not proxy:
            self._log.info("{peer}: path {path} could be read as another "
                           "route's", peer=self.peer,
                           path=clf_escape(target[:200]))
            self.respond(400, b"Bad Request: ambiguous path\n")
            return
        if proxy is None:
            self._log.info("{peer}: no route for {host}{path}", peer=self.peer,
                           host=clf_escape(name), path=clf_escape(path[:200]))
            self.respond(404, self.vhost.not_found_page, _HTML)
            return
        self._access.proxy = proxy.name
        if not self._authorized(request, proxy, user, password, absolute):
            return
        upgrade = upgrade_type(headers)
        ip, port = host_port(self.transport.getPeer())
        exchange = HttpExchange(
            proxy, self, request, target=target, upgrade=upgrade,
            client=(ip, port), headers=rewrite_request_headers(
                headers, client_ip=ip, original_host=host,
                host_rewrite=proxy.host_header_rewrite,
                set_headers=proxy.set_headers, upgrade=upgrade,
                framing=body_framing(headers)))
        self._exchange = exchange
        exchange.start()

    # Basic auth (http_user/http_pwd), through the server's throttle.

    def _authorized(self, request, proxy, user, password, absolute) -> bool:
        """
        Whether *request* may go on to *proxy* now.  If not, it has been
        answered (401/407) or is held by the server's password throttle
        (:mod:`labrelay.throttle`): reading stops, and once it
        passes :meth:`_on_request` takes it up again.  A request without
        credentials is no guess: answered at once, not counted.
        """
        passed, self._auth_passed = self._auth_passed, None
        if passed is not None and passed[0] is request \
                and passed[1] is proxy:   # let through, for this route
            return True
        if not (proxy.http_user or proxy.http_pwd):
            return True
        if not (user or password):
            self._unauthorized(absolute)
            return False
        verdicts = []
        decided = self.vhost.server.throttle.check(
            "vhost", self.client_ip, proxy.name,
            lambda: proxy.check_auth(user, password))
        decided.addCallback(verdicts.append)
        if verdicts:   # only a pass is decided at once
            return True
        held = self._exchange = _AuthHeld()
        self.gate.pause("auth")
        decided.addCallback(lambda _: self._auth_decided(
            verdicts[0], held, request, proxy, absolute))
        decided.addErrback(lambda f: self._log.failure(
            "vhost: checking credentials", f))
        return False

    def _auth_decided(self, verdict, held, request, proxy, absolute) -> None:
        if self._exchange is not held or self._closing:
            return   # the user left meanwhile
        self._exchange = None
        self.gate.resume("auth")
        if verdict.outcome == PASS:
            self._auth_passed = (request, proxy)
            self._on_request(request)
        else:
            self._auth_refused(verdict, proxy, absolute)
        self.pump()

    def _auth_refused(self, verdict, proxy, absolute) -> None:
        self.vhost.server.log_auth_failure(
            self.peer, f"wrong credentials for proxy [{proxy.name}]", verdict)
        self._unauthorized(absolute)

    def _unauthorized(self, absolute) -> None:
        if absolute:
            self.respond(407, b"Unauthorized\n", extra=[
                (b"Proxy-Authenticate", b'Basic realm="Restricted"')])
        else:
            self.respond(401, b"Unauthorized\n", extra=[
                (b"WWW-Authenticate", b'Basic realm="Restricted"')])

    # Writing responses.

    def send(self, event) -> None:
        """Send one h11 event to the user."""
        data = self.http.send(event)
        if data:
            self.transport.write(data)
        record = self._access
        if record is not None:
            kind = type(event)
            if kind is h11.Data:
                record.bytes_sent += len(event.data)
            elif kind is h11.Response or kind is h11.InformationalResponse:
                record.status = event.status_code
            elif kind is h11.EndOfMessage:
                self._log_access()

    def _discard_buffered_body(self) -> None:
        """Consume request body events already received (no exchange wants
        them), so a complete request keeps its connection alive."""
        while self.http.their_state is h11.SEND_BODY:
            try:
                event = self.http.next_event()
            except h11.RemoteProtocolError:
                return
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return

    def respond(self, status: int, body: bytes = b"", content_type=_TEXT,
                extra=(), close: bool = False) -> None:
        """A complete response from the relay itself; the connection stays
        open only if the request was read to its end."""
        self._discard_buffered_body()
        if self.http.their_state not in (h11.DONE, h11.MIGHT_SWITCH_PROTOCOL):
            close = True
        headers = [(b"Content-Type", content_type),
                   (b"Content-Length", b"%d" % len(body))] + list(extra)
        if close:
            headers.append((b"Connection", b"close"))
        self.send(h11.Response(status_code=status, headers=headers,
                               reason=HTTPStatus(status).phrase))
        if body and self._method != b"HEAD":
            self.send(h11.Data(data=body))
        self.send(h11.EndOfMessage())
        self._after_response()

    def _refuse(self, status: int, text: str) -> None:
        """Answer a request h11 could not accept, then close."""
        body = text.encode("utf-8", "replace") + b"\n"
        if self._access is None:   # no request line parsed
            self._access = AccessRecord(self.clock.seconds())
        self._access.status = status
        self._access.bytes_sent = len(body)
        self._log_access()
        self.transport.write(
            b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
            b"Connection: close\r\n\r\n" % (
                status, HTTPStatus(status).phrase.encode(), _TEXT, len(body))
            + body)
        self._close()

    def _after_response(self) -> None:
        """Our response is complete: next request, or close."""
        http = self.http
        if http.our_state is h11.DONE and http.their_state is h11.DONE:
            http.start_next_cycle()
            pipelined = http.trailing_data[0]
            self._head = bytearray(pipelined)
            self._head_started = bool(pipelined.lstrip(b"\r\n"))
            self._start_timer(self.vhost.head_timeout, self._head_timed_out)
            self.gate.resume("pipelined")
            self.pump()
        elif http.our_state is h11.MUST_CLOSE or http.their_state in (
                h11.MUST_CLOSE, h11.CLOSED, h11.ERROR):
            self._close()

    def _close(self) -> None:
        """Close after what was written; a peer still sending gets a FIN
        and is read (and ignored) until it closes or the linger bound."""
        if self._closing:
            return
        self._closing = True
        self._cancel_timer()
        self.gate.resume("pipelined")
        self.gate.resume("work")
        self.gate.resume("backpressure")
        if self._eof or not supports_half_close(self.transport):
            self.transport.loseConnection()
            return
        self.transport.loseWriteConnection()
        self._start_timer(self.vhost.linger_timeout,
                          self.transport.abortConnection)

    # Called by the exchange.

    def exchange_failed(self, exchange, status: int) -> None:
        """The exchange ended before a response: answer *status*."""
        if exchange is not self._exchange:
            return
        self._exchange = None
        if self.http.our_state is not h11.SEND_RESPONSE:
            self._close()
            return
        if status == 504:
            body = b"Gateway Timeout: the service behind this address did " \
                   b"not answer in time\n"
        else:
            body = b"Bad Gateway: the service behind this address is not " \
                   b"reachable\n"
        self.respond(status, body)

    def exchange_finished(self, exchange) -> None:
        if exchange is self._exchange:
            self._exchange = None
            self._after_response()

    def exchange_broken(self, exchange) -> None:
        """The response was cut: the user sees the connection close."""
        if exchange is self._exchange:
            self._exchange = None
            self._log_access()
            self._closing = True
            self._cancel_timer()
            self.transport.loseConnection()

    def switch_protocols(self, exchange, backend_trailing: bytes) -> None:
        """101 (or a 2xx to CONNECT) went out: splice raw bytes from now on."""
        self._exchange = None
        self._cancel_timer()
        self._log_access()
        user_trailing, _ = self.http.trailing_data
        proxy = exchange.proxy
        splice = Splice(self, exchange.work, b_codec=exchange.codec,
                        on_close=proxy.hand_over(exchange),
                        description=f"proxy [{proxy.name}] {self.peer} "
                                    f"(switched protocols)")
        if backend_trailing:
            self.transport.write(backend_trailing)
        splice.start(a_pending=user_trailing)

    # Diagnostics.

    def buffered_bytes(self) -> int:
        total = len(self.http.trailing_data[0])
        total += write_buffered(self.transport)
        exchange = self._exchange
        if exchange is not None and exchange.work is not None:
            total += write_buffered(exchange.work.transport)
            total += len(exchange.backend.trailing_data[0])
        return total
