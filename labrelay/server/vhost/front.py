# -*- test-case-name: tests.unit.test_vhost,tests.integration.test_vhost -*-
"""
The user side of the server's HTTP virtual-host port (frps
``vhost_http_port``): one HTTP/1.1 protocol per user connection
(:class:`VhostConnection`); :mod:`~labrelay.server.vhost.port` holds the
vhost as a whole and builds these.

Every request head on a connection is parsed with h11 (at most
:data:`MAX_HEAD` bytes, within :attr:`Vhost.head_timeout` seconds) and
routed on its own: a keep-alive connection may name another Host, and so
reach another proxy and client, with each request.
:mod:`~labrelay.server.vhost.dispatch` decides what a head becomes: a
request forwarded over one work connection that the route's target
opens (an :class:`~labrelay.server.vhost.exchange.HttpExchange`), or an
answer from the vhost itself.  This module answers what needs no backend:
400 (malformed, no Host, ambiguous framing or path), 401/407
(``http_user``/``http_pwd``), 404 (no route: the built-in page or
``custom_404_page``), 408 (head too slow), 431 (head too large), and the
502/504 an exchange reports.  A request whose framing another parser
could read otherwise is answered 400 and its connection closed (nothing
after it on the connection is read as a request).  Log lines write
request fields with control characters escaped.

Reading is switched by a :class:`~labrelay.server.proxy_base.ReadGate`:
while waiting for a work connection, while the work connection's write
buffer is full, and while a pipelined request waits for the current
response.  Error answers on a connection whose request body was not read
end with a lingering close (FIN, then input is discarded until the peer
closes or :attr:`Vhost.linger_timeout`), so the peer reads the answer
instead of a reset.

What goes back to the user (h11 events, batched writes, the vhost's own
answers) and each request's one access-log line are written by
:mod:`~labrelay.server.vhost.responses`; Basic auth goes through the
server's password throttle (:mod:`~labrelay.server.vhost.auth`); the
pages the vhost answers by itself are in
:mod:`~labrelay.server.vhost.pages`.
"""

from http import HTTPStatus

import h11
from twisted.logger import Logger

from ...peers import describe, host_port
from ...relay import RelayedProtocol, Splice, set_no_delay, supports_half_close
from ..proxy_base import ReadGate
from .access_log import AccessRecord
from .auth import BasicAuthMixin
from .dispatch import Forward, Refusal, dispatch
from .exchange import HttpExchange
from .headers import body_framing, rewrite_request_headers, upgrade_type
from .pages import BAD_GATEWAY, GATEWAY_TIMEOUT
from .responses import ResponseMixin

#: Largest request head (request line + headers), as Go's default 1 MiB is
#: far more than any browser sends; beyond it: 431.
MAX_HEAD = 64 * 1024

#: Bytes a request line may start with (an HTTP method is a token); a TLS
#: ClientHello or other binary junk is refused at its first byte instead
#: of waiting for a line end that may never come.
_TOKEN_CHARS = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+-.^_`|~"
)


class VhostConnection(BasicAuthMixin, ResponseMixin, RelayedProtocol):
    """One user connection on the vhost port (see the module docstring)."""

    _log = Logger()

    def __init__(self, vhost):
        self.vhost = vhost
        self.clock = vhost.clock
        self.http = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        self.peer = "?"
        self.client_ip = "-"
        self.gate = None
        self._exchange = None
        self._access = None  # the AccessRecord of the current request
        self._method = b""
        self._timer = None
        # Whether the head timer counts: not while a request is in flight
        # (the timer is left to run out then, see _arm_head_timer).
        self._awaiting_head = False
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
        self._auth_passed = None  # (request, proxy) the throttle passed
        # While an exchange relays a batch of response events, their bytes
        # are held here and written together (hold_writes/flush_writes).
        self._held = None

    # Twisted.

    def connectionMade(self):
        set_no_delay(self.transport)
        self.peer = describe(self.transport)
        self.client_ip = host_port(self.transport.getPeer())[0] or "-"
        self.gate = ReadGate(self.transport)
        self.vhost.connections.add(self)
        self.vhost.context.connections.add(self)
        self._arm_head_timer()

    def data_before_splice(self, data):
        if self._closing:
            return  # lingering close: discard
        if self.http.their_state is h11.IDLE:
            if not self._head_started:
                start = data.lstrip(b"\r\n")[:1]
                if start:
                    self._head_started = True
                    if start[0] not in _TOKEN_CHARS:
                        self._log.info("{peer}: not an HTTP request", peer=self.peer)
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
        self.vhost.context.connections.remove(self)
        exchange, self._exchange = self._exchange, None
        if exchange is not None:
            exchange.front_lost()
        self._log_access(499)

    # Timers.

    def _start_timer(self, seconds, call) -> None:
        self._cancel_timer()
        self._timer = self.clock.callLater(seconds, call)

    def _arm_head_timer(self) -> None:
        """The next request head is due within :attr:`Vhost.head_timeout`.
        A keep-alive connection moves one timer on (a reset to a later
        time costs no heap work) instead of a cancel and a new call per
        request."""
        self._awaiting_head = True
        timer = self._timer
        if timer is not None and timer.active() and timer.func == self._head_timed_out:
            timer.reset(self.vhost.head_timeout)
        else:
            self._start_timer(self.vhost.head_timeout, self._head_timed_out)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None

    def _head_timed_out(self) -> None:
        self._timer = None
        if not self._awaiting_head:
            return  # a request is in flight; armed again after its response
        partial, _ = self.http.trailing_data
        if partial and self.http.their_state is h11.IDLE:
            self._log.info(
                "{peer}: no complete request head within {seconds}s; closing",
                peer=self.peer,
                seconds=self.vhost.head_timeout,
            )
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
        while not self._closing and self.sink is None:
            exchange = self._exchange
            if exchange is not None and not exchange.accepts_body:
                return
            # a nested pump() asked for what this next_event() gives
            self._pump_again = False
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
                self._awaiting_head = False  # the head timer stops counting
                self._on_request(event)
            elif kind is h11.Data:
                if exchange is not None:
                    exchange.request_data(event.data)
            elif kind is h11.EndOfMessage:
                if exchange is not None:
                    exchange.request_end()
                elif self.http.our_state in (h11.DONE, h11.MUST_CLOSE):
                    self._after_response()
                if not self._nothing_more_yet():
                    continue
                return
            elif kind is h11.ConnectionClosed:
                if self._exchange is None:
                    self._close()
                return

    def _nothing_more_yet(self) -> bool:
        """Whether h11 has no event for us until more bytes come: the
        request is read whole and nothing follows it yet (next_event()
        would say NEED_DATA)."""
        http = self.http
        if http.their_state is not h11.DONE:
            return False
        pipelined, closed = http.trailing_data
        return not (pipelined or closed)

    def _bad_request(self, error) -> None:
        exchange, self._exchange = self._exchange, None
        if exchange is not None:
            exchange.front_lost()
        if self._eof:
            self._log.info("{peer}: request cut short; closing", peer=self.peer)
            self._close()
            return
        status = error.error_status_hint or 400
        if status == 501:
            # h11's hint for a Transfer-Encoding other than chunked: the
            # body length is unknown, a 400 (RFC 9112 §6.1)
            status = 400
        self._log.info(
            "{peer}: bad request ({status}): {error}",
            peer=self.peer,
            status=status,
            error=error,
        )
        if self.http.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            self._refuse(status, str(error) or HTTPStatus(status).phrase)
        else:
            self._close()

    def _on_request(self, request) -> None:
        self._method = request.method
        self._access = AccessRecord.of(self.clock.seconds(), request)
        head, self._head = self._head, bytearray()
        del head[len(head) - len(self.http.trailing_data[0]) :]
        if len(head) > MAX_HEAD:
            self._log.info(
                "{peer}: request head over {size} bytes", peer=self.peer, size=MAX_HEAD
            )
            self._refuse(431, "request head too large")
            return
        decision = dispatch(
            request, bytes(head), self.vhost.routes, self.vhost.not_found_page
        )
        if isinstance(decision, Forward):
            self._forward(request, decision)
            return
        if decision.log:
            self._log.info(
                "{peer}: " + decision.log, peer=self.peer, **decision.log_fields
            )
        if isinstance(decision, Refusal):
            self._refuse(decision.status, decision.text)
            return
        if decision.user is not None:
            self._access.user = decision.user
        self.respond(
            decision.status, decision.body, decision.content_type, close=decision.close
        )

    def _forward(self, request, decision) -> None:
        """Start the exchange of a routed request, once its Basic auth
        passes."""
        proxy = decision.proxy
        self._access.user = decision.user
        self._access.proxy = proxy.name
        if not self._authorized(
            request, proxy, decision.user, decision.password, decision.absolute
        ):
            return
        headers = decision.headers
        upgrade = upgrade_type(headers)
        ip, port = host_port(self.transport.getPeer())
        exchange = HttpExchange(
            proxy,
            self,
            request,
            target=decision.target,
            upgrade=upgrade,
            client=(ip, port),
            headers=rewrite_request_headers(
                headers,
                client_ip=ip,
                original_host=decision.host,
                host_rewrite=proxy.host_header_rewrite,
                set_headers=proxy.set_headers,
                upgrade=upgrade,
                framing=body_framing(headers),
            ),
        )
        self._exchange = exchange
        exchange.start()

    # After a response.

    def _after_response(self) -> None:
        """Our response is complete: next request, or close."""
        http = self.http
        if http.our_state is h11.DONE and http.their_state is h11.DONE:
            http.start_next_cycle()
            pipelined = http.trailing_data[0]
            self._head = bytearray(pipelined)
            self._head_started = bool(pipelined.lstrip(b"\r\n"))
            self._arm_head_timer()
            self.gate.resume("pipelined")
            if pipelined or http.trailing_data[1]:
                self.pump()  # else h11 has nothing until bytes come
        elif http.our_state is h11.MUST_CLOSE or http.their_state in (
            h11.MUST_CLOSE,
            h11.CLOSED,
            h11.ERROR,
        ):
            self._close()

    def _close(self) -> None:
        """Close after what was written; a peer still sending gets a FIN
        and is read (and ignored) until it closes or the linger bound."""
        if self._closing:
            return
        self.flush_writes()  # what was sent goes before the FIN
        self._closing = True
        self._cancel_timer()
        self.gate.resume("pipelined")
        self.gate.resume("work")
        self.gate.resume("backpressure")
        if self._eof or not supports_half_close(self.transport):
            self.transport.loseConnection()
            return
        self.transport.loseWriteConnection()
        self._start_timer(self.vhost.linger_timeout, self.transport.abortConnection)

    # Called by the exchange.

    def exchange_failed(self, exchange, status: int) -> None:
        """The exchange ended before a response: answer *status*."""
        if exchange is not self._exchange:
            return
        self._exchange = None
        if self.http.our_state is not h11.SEND_RESPONSE:
            self._close()
            return
        self.respond(status, GATEWAY_TIMEOUT if status == 504 else BAD_GATEWAY)

    def exchange_finished(self, exchange) -> None:
        if exchange is self._exchange:
            self._exchange = None
            self._after_response()

    def exchange_broken(self, exchange) -> None:
        """The response was cut: the user sees the connection close."""
        if exchange is self._exchange:
            self._exchange = None
            self._log_access()
            self.flush_writes()
            self._closing = True
            self._cancel_timer()
            self.transport.loseConnection()

    def switch_protocols(self, exchange, backend_trailing: bytes) -> None:
        """101 (or a 2xx to CONNECT) went out: splice raw bytes from now on."""
        self._exchange = None
        self._cancel_timer()
        self._log_access()
        self.flush_writes()  # the 101 goes before the spliced bytes
        user_trailing, _ = self.http.trailing_data
        proxy = exchange.proxy
        splice = Splice(
            self,
            exchange.work,
            b_codec=exchange.codec,
            on_close=proxy.sink_closed,
            description=f"proxy [{proxy.name}] {self.peer} (switched protocols)",
        )
        proxy.sink_replaced(exchange, splice)
        if backend_trailing:
            self.transport.write(backend_trailing)
        splice.start(a_pending=user_trailing)
