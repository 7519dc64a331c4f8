# -*- test-case-name: tests.test_vhost -*-
"""
``type = http`` proxies: registration on the vhost route table, and the
forwarding of one HTTP request over one work connection
(:class:`HttpExchange`).

An exchange writes the rewritten request (frp's reverse-proxy rewrite: Host
rewrite, ``header_*``, X-Forwarded-*, X-Real-IP, hop-by-hop headers removed)
onto a work connection and parses the response with a client-role h11
connection.  Bodies stream event by event in both directions; the two
transports are cross-registered as producers (through the read gates) for
the exchange's life, so neither side's bytes pile up in this process.  A
``101 Switching Protocols`` (or a 2xx to CONNECT) hands both connections to
a raw :class:`~labrelay.relay.Splice`.

Body framing headers are never forwarded as received: h11 reads each
message's framing (the vhost has refused requests whose framing is
ambiguous, see :mod:`~labrelay.server.vhost_request`), and each hop gets
one canonical header from that reading (:func:`body_framing`) while h11
writes the body anew; a response with both Content-Length and
Transfer-Encoding is forwarded chunked, without its Content-Length.

A work connection whose exchange ended cleanly (request and response
both complete as h11 frames them, the request without a chunked body, the
response not framed both ways, no ``Connection: close``, no Upgrade,
nothing extra received) is kept idle by its proxy (:class:`IdleWork`) and
carries that proxy's next request, as frp's reverse proxy keeps upstream
keep-alive connections: at most :attr:`Vhost.max_idle_work` per proxy, each
closed after :attr:`Vhost.idle_work_timeout` seconds idle, when its peer
closes it or sends anything while idle, and when the proxy closes.  The
connection keeps its payload codec (the cipher and compression streams
continue), and StartWorkConn is sent only on its first use.  Any other
ending closes the work connection; the client's pool replenishes (each
pooled connection taken asks for another).
"""

import base64
import binascii
import hmac

import h11
from twisted.logger import Logger

from ..errors import ProtocolError, ProxyError
from ..protocol import messages
from ..protocol.codec import PayloadCodec
from .proxy_base import ProxyBase, ReadGate, WaitsForWork
from .vhost_routes import normalize_domain

#: Headers that concern one hop only (Go's ReverseProxy list).
HOP_BY_HOP = frozenset([
    b"connection", b"proxy-connection", b"keep-alive", b"proxy-authenticate",
    b"proxy-authorization", b"te", b"trailer", b"transfer-encoding",
    b"upgrade"])

#: Body framing headers: never forwarded as received; each hop gets the
#: framing h11 read (:func:`body_framing`), and h11 frames the body anew.
FRAMING = frozenset([b"content-length", b"transfer-encoding"])

#: Request headers the relay sets itself (any value from the user is replaced).
_FORWARDING = frozenset([b"x-forwarded-for", b"x-forwarded-host",
                         b"x-forwarded-proto", b"x-real-ip"])


def connection_tokens(headers) -> set:
    """Lower-cased tokens of every ``Connection`` header in *headers*."""
    tokens = set()
    for name, value in headers:
        if name.lower() == b"connection":
            tokens.update(t.strip().lower() for t in value.split(b","))
    tokens.discard(b"")
    return tokens


def header_value(headers, wanted: bytes):
    """The first value of header *wanted* (lower-case) or None."""
    for name, value in headers:
        if name.lower() == wanted:
            return value
    return None


def upgrade_type(headers):
    """The ``Upgrade`` value of a request asking for one, else None (as Go:
    both ``Upgrade`` and a ``Connection: upgrade`` token are needed)."""
    value = header_value(headers, b"upgrade")
    if value and b"upgrade" in connection_tokens(headers):
        return value
    return None


def basic_auth(value) -> tuple:
    """(user, password) from a ``Basic`` credentials header value, or
    ("", "") when there are none or they do not decode."""
    if not value:
        return "", ""
    scheme, _, encoded = value.strip().partition(b" ")
    if scheme.lower() != b"basic":
        return "", ""
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return "", ""
    user, sep, password = decoded.decode("utf-8", "replace").partition(":")
    if not sep:
        return "", ""
    return user, password


def body_framing(headers) -> list:
    """
    The framing header of a message as h11 read its body, from the
    message's h11 headers, written canonically: ``Transfer-Encoding:
    chunked`` (which wins over a Content-Length, RFC 9112 §6.3), else
    ``Content-Length`` as a plain number, else none.
    """
    length = None
    for name, value in headers:
        lower = name.lower()
        if lower == b"transfer-encoding":
            return [(b"Transfer-Encoding", b"chunked")]
        if lower == b"content-length":
            length = int(value)
    if length is None:
        return []
    return [(b"Content-Length", b"%d" % length)]


def has_both_framings(headers) -> bool:
    """Whether h11 *headers* carry both Content-Length and
    Transfer-Encoding (a message some peer may frame otherwise)."""
    names = {name.lower() for name, _ in headers}
    return FRAMING <= names


def _hop_filtered(headers, framing=()):
    """*headers* without hop-by-hop headers and those named in
    Connection; the framing headers replaced by *framing* (where the first
    of them was, else at the end)."""
    tokens = connection_tokens(headers) - FRAMING
    pending = list(framing)
    for name, value in headers:
        lower = name.lower()
        if lower in FRAMING:
            yield from pending
            pending = []
        elif lower not in HOP_BY_HOP and lower not in tokens:
            yield name, value
    yield from pending


def rewrite_request_headers(headers, *, client_ip: str, original_host: bytes,
                            host_rewrite: str = "", set_headers=(),
                            upgrade=None, framing=()) -> list:
    """
    The headers frps sends on the work connection for a request with
    *headers* (h11 raw items): hop-by-hop headers removed (Upgrade kept as
    ``Connection: Upgrade`` when *upgrade*), the body framing headers
    replaced by *framing* (:func:`body_framing`), Host rewritten,
    X-Forwarded-For appended, X-Forwarded-Host/-Proto and X-Real-IP set,
    then every ``header_*`` entry of *set_headers* set (framing headers
    excepted).
    """
    prior = []
    out = []
    for name, value in _hop_filtered(headers, framing):
        lower = name.lower()
        if lower == b"x-forwarded-for":
            prior.append(value)
        elif lower in _FORWARDING:
            continue
        elif lower == b"host" and host_rewrite:
            out.append((name, host_rewrite.encode("utf-8")))
        else:
            out.append((name, value))
    if upgrade is not None:
        out += [(b"Connection", b"Upgrade"), (b"Upgrade", upgrade)]
    ip = client_ip.encode("ascii", "replace")
    out += [(b"X-Forwarded-For", b", ".join(prior + [ip])),
            (b"X-Forwarded-Host", original_host),
            (b"X-Forwarded-Proto", b"http"),
            (b"X-Real-IP", ip)]
    for key, value in set_headers:
        raw = key.encode("utf-8")
        lower = raw.lower()
        if lower == b"host" or lower in FRAMING:
            # as Go: the Host header is req.Host, not a header_ entry; and
            # the framing is the one h11 read
            continue
        out = [(n, v) for n, v in out if n.lower() != lower]
        out.append((raw, value.encode("utf-8")))
    return out


def response_headers(headers, switching: bool = False) -> list:
    """The headers of a backend response as sent to the user (hop-by-hop
    removed, the framing as h11 read it; a protocol switch keeps
    Connection and Upgrade)."""
    if switching:
        return list(headers)
    return list(_hop_filtered(headers, body_framing(headers)))


class WorkLink:
    """A work connection as exchanges use it, with its payload codec (None:
    plain), which lives as long as the connection."""

    __slots__ = ("work", "codec")

    def __init__(self, work, codec):
        self.work = work
        self.codec = codec


class IdleWork:
    """
    An idle work connection kept by *proxy* for its next request: it is the
    connection's ``splice`` while idle, so EOF, loss or any data (a backend
    must not talk between requests) drop it; so does *timeout*.
    """

    _log = Logger()

    def __init__(self, proxy, link, clock, timeout):
        self.proxy = proxy
        self.link = link
        self.dropped = False
        link.work.splice = self
        self._timer = clock.callLater(timeout, self.drop, "idle timeout")

    def take(self):
        """Stop idling; the link, or None if its connection is gone."""
        self._stop()
        if not self.link.work.alive:
            return None
        self.link.work.splice = None
        return self.link

    def drop(self, why: str) -> None:
        """Close the connection and forget it."""
        if self.dropped:
            return
        self._stop()
        self.proxy.forget_idle(self)
        work = self.link.work
        self._log.debug("proxy [{name}]: closing idle work connection "
                        "{peer}: {why}", name=self.proxy.name,
                        peer=getattr(work, "peer", "?"), why=why)
        if work.alive:
            work.transport.loseConnection()

    def _stop(self) -> None:
        self.dropped = True
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None

    # The "splice" interface of the connection while idle.

    def forward(self, source, data: bytes) -> None:
        self.drop("data on an idle work connection")

    def end_of_input(self, source) -> None:
        self.drop("closed by the client while idle")

    def connection_lost(self, source, reason) -> None:
        self.drop("lost while idle")


class HttpProxy(ProxyBase):
    """One ``type = http`` proxy: its routes and its request forwarding."""

    type = "http"
    _log = Logger()

    def __init__(self, server, control, message, vhost):
        super().__init__(server, control, message)
        self.vhost = vhost
        self.http_user = message.http_user
        self.http_pwd = message.http_pwd
        self.host_header_rewrite = message.host_header_rewrite
        self.set_headers = tuple((message.headers or {}).items())
        self.route_by_http_user = message.route_by_http_user
        self.domains = []
        self.locations = list(message.locations or []) or [""]
        self.closed = False
        self._idle = []   # IdleWork, most recently used last

    def _wanted_domains(self) -> list:
        """Domains from custom_domains and subdomain, validated as frps."""
        message = self.message
        subdomain_host = normalize_domain(self.server.config.subdomain_host)
        domains = []
        for domain in message.custom_domains or []:
            domain = normalize_domain(domain)
            if not domain:
                continue
            if subdomain_host and domain.count(".") > \
                    subdomain_host.count(".") and subdomain_host in domain:
                raise ProxyError(f"custom domain [{domain}] should not belong "
                                 f"to subdomain host [{subdomain_host}]")
            domains.append(domain)
        subdomain = message.subdomain.strip()
        if subdomain:
            if not subdomain_host:
                raise ProxyError("subdomain is not supported because this "
                                 "feature is not enabled in remote frps")
            if "." in subdomain or "*" in subdomain:
                raise ProxyError("'.' and '*' are not supported in subdomain")
            domains.append(normalize_domain(f"{subdomain}.{subdomain_host}"))
        if not domains:
            raise ProxyError("custom_domains and subdomain should set at least "
                             "one of them")
        return domains

    def _check_route_limits(self, domains: list) -> None:
        """Refuse a proxy with more keys than the server allows, before a
        single route is built: one NewProxy must stay cheap to register
        (``max_domains_per_proxy``, ``max_locations_per_proxy``,
        ``max_routes_per_proxy``, ``max_routes_total``; 0 turns one off)."""
        config = self.server.config
        routes = len(domains) * len(self.locations)
        for count, limit, what in (
                (len(domains), config.max_domains_per_proxy,
                 "max_domains_per_proxy"),
                (len(self.locations), config.max_locations_per_proxy,
                 "max_locations_per_proxy"),
                (routes, config.max_routes_per_proxy, "max_routes_per_proxy")):
            if 0 < limit < count:
                raise ProxyError(f"{count} {what.split('_')[1]} exceed the "
                                 f"{what} ({limit}) of this server")
        limit = config.max_routes_total
        if 0 < limit < len(self.vhost.routes) + routes:
            raise ProxyError(f"the server holds its max_routes_total "
                             f"({limit}) of vhost routes")

    def start(self) -> str:
        domains = self._wanted_domains()
        self._check_route_limits(domains)
        self.vhost.routes.add(
            [(domain, location, self.route_by_http_user)
             for domain in domains for location in self.locations], self)
        self.domains = domains
        self.routes = len(domains) * len(self.locations)
        port = self.vhost.port
        return ",".join(domain if port == 80 else f"{domain}:{port}"
                        for domain in domains)

    def close(self) -> None:
        self.closed = True
        self.vhost.routes.remove(self)
        for idle in list(self._idle):
            idle.drop("the proxy closed")

    # Idle work connections (keep-alive toward the backend).

    def take_idle_work(self):
        """The most recently idled live work connection (a WorkLink), or
        None."""
        while self._idle:
            link = self._idle.pop().take()
            if link is not None:
                return link
        return None

    def keep_idle(self, link) -> None:
        """*link* carried a complete exchange: keep it for the next one, or
        close it if the proxy is closed or keeps enough already."""
        work = link.work
        if not work.alive:
            return
        if self.closed or len(self._idle) >= self.vhost.max_idle_work:
            work.transport.loseConnection()
            return
        self._idle.append(IdleWork(self, link, self.vhost.clock,
                                   self.vhost.idle_work_timeout))

    def forget_idle(self, idle) -> None:
        if idle in self._idle:
            self._idle.remove(idle)

    @property
    def idle_work_count(self) -> int:
        return len(self._idle)

    def check_auth(self, user: str, password: str) -> bool:
        """Whether basic-auth credentials pass this proxy's http_user/pwd."""
        if not (self.http_user or self.http_pwd):
            return True
        return (hmac.compare_digest(user.encode(), self.http_user.encode())
                and hmac.compare_digest(password.encode(),
                                        self.http_pwd.encode()))

    def user_refused(self, exchange, error) -> None:
        exchange.no_work_connection(error)

    def hand_over(self, exchange):
        """An exchange became a raw splice (Upgrade): keep counting it as
        one connection; return the splice's on_close callback."""
        self.bytes_in += exchange.bytes_a_to_b
        self.bytes_out += exchange.bytes_b_to_a
        return self.splice_closed


class HttpExchange(WaitsForWork):
    """
    One request of *front* (a vhost connection) forwarded over one work
    connection of *proxy*, and its response.

    It offers what :meth:`ProxyBase.get_work_connection` expects of a user
    (``wait_for``, ``ended``, ``peer``, ``transport``) and what a work
    connection's ``splice`` must offer (``forward``, ``end_of_input``,
    ``connection_lost``).
    """

    _log = Logger()

    def __init__(self, proxy, front, request, *, target: bytes,
                 headers: list, upgrade, client):
        self.proxy = proxy
        self.front = front
        self.method = request.method
        self.target = target
        self.headers = headers
        self.upgrade = upgrade
        self.client = client           # (ip, port) of the user
        self.backend = h11.Connection(h11.CLIENT)
        self.work = None
        self.codec = None
        self.link = None               # the WorkLink in use
        self.ended = False
        self.request_done = False
        self.response_started = False
        self.response_done = False
        self.bytes_a_to_b = 0          # user -> work (wire bytes)
        self.bytes_b_to_a = 0          # work -> user (wire bytes)
        self._work_gate = None
        self._work_eof = False         # the work connection sends no more
        self._work_gone = False        # the work connection is closed
        self._opened = False
        self._head_timer = None
        # A backend that ignores Transfer-Encoding would read a chunked
        # body as further requests, and a response with both framings may
        # have been read otherwise by the backend's own side: after
        # either, the work connection carries nothing more.
        self._framing_doubt = any(name.lower() == b"transfer-encoding"
                                  for name, _ in headers)

    # What get_work_connection needs of a "user".

    @property
    def peer(self) -> str:
        return self.front.peer

    @property
    def transport(self):
        return self.front.transport


    @property
    def accepts_body(self) -> bool:
        """Whether request body events can be handed to this exchange."""
        return self.work is not None or self.ended

    # Life.

    def start(self) -> None:
        self.front.gate.pause("work")
        link = self.proxy.take_idle_work()
        if link is not None:
            self._use(link)
        else:
            self.proxy.get_work_connection(self, self._work_ready)

    def _work_ready(self, work) -> None:
        """A new work connection from the pool: start it."""
        ip, port = self.client
        work.send(messages.StartWorkConn(proxy_name=self.proxy.name,
                                         src_addr=ip, src_port=port))
        proxy = self.proxy
        codec = None
        if proxy.use_encryption or proxy.use_compression:
            codec = PayloadCodec(proxy.control.token, proxy.use_encryption,
                                 proxy.use_compression)
        self._use(WorkLink(work, codec))

    def _use(self, link) -> None:
        self.link = link
        work = self.work = link.work
        self.codec = link.codec
        proxy = self.proxy
        work.splice = self
        self._opened = True
        proxy.splice_opened(self)
        self._work_gate = ReadGate(work.transport)
        self.front.transport.registerProducer(self._work_gate.producer(),
                                              True)
        work.transport.registerProducer(self.front.gate.producer(), True)
        try:
            head = self.backend.send(h11.Request(
                method=self.method, target=self.target, headers=self.headers))
        except h11.LocalProtocolError as e:
            self._fail(502, f"cannot forward the request: {e}")
            return
        self._to_work(head)
        self.front.gate.resume("work")
        early = work.take_early_data()
        if early:
            self.forward(work, early)
        if not self.ended:
            self.front.pump()

    def _to_work(self, data: bytes) -> None:
        if not data or self._work_gone or self.work is None:
            return
        if self.codec is not None:
            data = self.codec.encode(data)
        self.bytes_a_to_b += len(data)
        self.work.transport.write(data)

    def _backend_open(self) -> bool:
        return (self.work is not None and not self._work_gone
                and self.backend.our_state is h11.SEND_BODY)

    # Request events from the front.

    def request_data(self, data: bytes) -> None:
        if self._backend_open():
            self._to_work(self.backend.send(h11.Data(data=data)))

    def request_end(self) -> None:
        self.request_done = True
        if self._backend_open():
            self._to_work(self.backend.send(h11.EndOfMessage()))
        if not self.response_started and not self.ended:
            self._head_timer = self.front.clock.callLater(
                self.front.vhost.response_timeout, self._head_timed_out)
        self._maybe_finish()

    # The work connection's side (the "splice" interface).

    def forward(self, source, data: bytes) -> None:
        if self.ended:
            return
        self.bytes_b_to_a += len(data)
        if self.codec is not None:
            try:
                data = self.codec.decode(data)
            except ProtocolError as e:
                self._backend_failed(f"undecodable payload: {e}")
                return
        if data:
            self.backend.receive_data(data)
            self._pump_backend()

    def end_of_input(self, source) -> None:
        self._work_ended("the work connection ended")

    def connection_lost(self, source, reason) -> None:
        self._work_gone = True
        self._work_ended("the work connection was lost")

    def _work_ended(self, why: str) -> None:
        if self._work_eof:
            return
        self._work_eof = True
        if self.ended:
            return
        self.backend.receive_data(b"")
        self._pump_backend()
        if not self.response_done and not self.ended:
            self._backend_failed(why)

    def _pump_backend(self) -> None:
        while not self.ended:
            try:
                event = self.backend.next_event()
            except h11.RemoteProtocolError as e:
                self._backend_failed(f"bad response: {e}")
                return
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            kind = type(event)
            try:
                if kind is h11.InformationalResponse:
                    switching = event.status_code == 101
                    self.front.send(h11.InformationalResponse(
                        status_code=event.status_code, reason=event.reason,
                        headers=response_headers(event.headers.raw_items(),
                                                 switching)))
                    if switching:
                        self._switch()
                        return
                elif kind is h11.Response:
                    self._response_head()
                    if has_both_framings(event.headers.raw_items()):
                        self._framing_doubt = True
                    switching = self.backend.their_state is \
                        h11.SWITCHED_PROTOCOL
                    self.front.send(h11.Response(
                        status_code=event.status_code, reason=event.reason,
                        headers=response_headers(event.headers.raw_items())))
                    if switching:
                        self._switch()
                        return
                elif kind is h11.Data:
                    self.front.send(h11.Data(data=event.data))
                elif kind is h11.EndOfMessage:
                    self.front.send(h11.EndOfMessage())
                    self.response_done = True
                    self._maybe_finish()
                    return
                else:
                    return  # ConnectionClosed after a complete response
            except h11.LocalProtocolError as e:
                self._log.warn("{peer}: proxy [{name}]: cannot relay the "
                               "response: {error}", peer=self.peer,
                               name=self.proxy.name, error=e)
                self._abort()
                return

    def _response_head(self) -> None:
        self.response_started = True
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _switch(self) -> None:
        """The backend switched protocols: raw bytes from now on."""
        if self.front.http.our_state is not h11.SWITCHED_PROTOCOL:
            self._abort()
            return
        trailing, _ = self.backend.trailing_data
        self._end()
        self._opened = False  # the raw splice carries on the count
        self.front.switch_protocols(self, trailing)

    # Endings.

    def _head_timed_out(self) -> None:
        self._head_timer = None
        self._fail(504, "no response from the backend within "
                        f"{self.front.vhost.response_timeout:g}s")

    def no_work_connection(self, error) -> None:
        status = 502 if self.proxy.control.closed else 504
        self._fail(status, str(error))

    def _backend_failed(self, why: str) -> None:
        if self.response_done or self.ended:
            return
        if self.response_started:
            self._log.warn("{peer}: proxy [{name}]: response cut: {why}",
                           peer=self.peer, name=self.proxy.name, why=why)
            self._abort()
        else:
            self._fail(502, why)

    def _fail(self, status: int, why: str) -> None:
        if self.ended:
            return
        self._log.warn("{peer}: proxy [{name}] {method} {target}: {status} "
                       "({why})", peer=self.peer, name=self.proxy.name,
                       method=self.method.decode("latin-1"),
                       target=self.target.decode("latin-1")[:200],
                       status=status, why=why)
        self._end()
        self._close_work()
        self.front.exchange_failed(self, status)

    def _abort(self) -> None:
        """Give up on a response already under way: close both sides."""
        if self.ended:
            return
        self._end()
        self._close_work()
        self.front.exchange_broken(self)

    def _maybe_finish(self) -> None:
        if self.ended or not (self.request_done and self.response_done):
            return
        reusable = self._reusable()
        gate = self._work_gate
        self._end()
        if reusable:
            if gate is not None:
                gate.resume("backpressure")  # its producer is unregistered
            self._release_work()
        else:
            self._close_work()
        self.front.exchange_finished(self)

    def _reusable(self) -> bool:
        """Whether the work connection may carry another request: both
        messages complete and framed beyond doubt (the request by a
        Content-Length or without a body, the response not both ways),
        keep-alive on both sides, no protocol switch, nothing received
        beyond the response."""
        backend = self.backend
        return (self.link is not None and not self._framing_doubt
                and not self._work_gone
                and not self._work_eof and self.work.alive
                and self.upgrade is None and self.method != b"CONNECT"
                and backend.our_state is h11.DONE
                and backend.their_state is h11.DONE
                and backend.trailing_data == (b"", False))

    def _release_work(self) -> None:
        """Hand the work connection back to the proxy's idle list."""
        self._work_gone = True  # for this exchange: it writes no more
        if self._opened:
            self._opened = False
            self.proxy.splice_closed(self)
        self.proxy.keep_idle(self.link)

    def front_lost(self) -> None:
        """The user's connection is gone."""
        if self.ended:
            return
        self._end()
        self._close_work()
        self.stop_waiting()

    def _end(self) -> None:
        self.ended = True
        self.front.gate.resume("work")
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        if self._work_gate is not None:
            _unregister(self.front.transport)
            _unregister(self.work.transport)
            self.front.gate.resume("backpressure")
            self._work_gate = None

    def _close_work(self) -> None:
        if self.work is not None and not self._work_gone:
            self._work_gone = True
            self.work.transport.loseConnection()
        if self._opened:
            self._opened = False
            self.proxy.splice_closed(self)


def _unregister(transport) -> None:
    try:
        transport.unregisterProducer()
    except RuntimeError:
        pass
