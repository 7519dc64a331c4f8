# -*- test-case-name: tests.unit.test_vhost,tests.integration.test_vhost,tests.integration.test_vhost_reuse -*-
"""
The HTTP vhost as a whole (frps ``vhost_http_port``): :class:`Vhost` holds
its route table, timeouts, pages and live connections, and makes the
``type = http`` proxies; :class:`VhostFactory` builds one
:class:`~labrelay.server.vhost.front.VhostConnection` per accepted user
connection.  Also the diagnostic count of HTTP bytes held in this process
(:meth:`Vhost.buffered_bytes`).
"""

from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOProtocol

from .front import VhostConnection
from .pages import load_not_found_page
from .proxy import HttpProxy
from .routes import RouteTable

#: Seconds a connection has to send a complete request head (slowloris),
#: and to stay idle between keep-alive requests.
HEAD_TIMEOUT = 30

#: Seconds a closing connection may keep sending before it is reset.
LINGER_TIMEOUT = 5

#: Idle work connections each http proxy keeps for its next requests, and
#: the seconds one may stay idle (frp's Go transport: 60 s).  Go keeps 5 but
#: its goroutines free connections one by one, each often to a request
#: already waiting; here one read of a mux session can end many exchanges
#: at once, and with 5 kept about a quarter of the requests of 8 busy users
#: opened a new work and backend connection (bench/vhost_bench.py).  So up
#: to 64 are kept, the concurrency of a busy site, but only the first
#: IDLE_WORK_KEPT of them for IDLE_WORK_TIMEOUT: the others close after
#: SURPLUS_IDLE_TIMEOUT unless a request takes them, since every idle
#: stream of a yamux session is one more producer its client pauses and
#: resumes whenever the session's buffer fills (after a burst of 64 users,
#: 64 idle streams more than doubled the client's CPU per 1 MiB response).
MAX_IDLE_WORK = 64
IDLE_WORK_KEPT = 5
IDLE_WORK_TIMEOUT = 60
SURPLUS_IDLE_TIMEOUT = 1


def write_buffered(transport) -> int:
    """
    Bytes written to *transport* and still held in this process (TCP
    transport buffer, TLS application buffer, yamux stream buffers).
    A diagnostic: it reads Twisted's private buffer attributes.
    """
    if transport is None:
        return 0
    if hasattr(transport, "send_buffered"):  # a yamux stream
        session = getattr(transport, "_session", None)
        return (
            transport.send_buffered
            + transport.receive_buffered
            + write_buffered(getattr(session, "transport", None))
        )
    if isinstance(transport, TLSMemoryBIOProtocol):
        held = sum(len(b) for b in getattr(transport, "_appSendBuffer", ()))
        return held + write_buffered(transport.transport)
    data = getattr(transport, "dataBuffer", None)
    if data is None:
        return 0
    return (
        len(data)
        - getattr(transport, "offset", 0)
        + getattr(transport, "_tempDataLen", 0)
    )


class Vhost:
    """
    The HTTP vhost of a relay: its route table, its pages and timeouts, its
    live connections.  It sees the server only through its
    :class:`~labrelay.server.context.ServerContext`.

    :ivar port: the vhost port reported in NewProxyResp (the bound port once
        listening).
    """

    _log = Logger()

    def __init__(self, context):
        config = context.config
        self.context = context
        self.clock = context.clock
        self.routes = RouteTable()
        self.port = config.vhost_http_port
        self.response_timeout = config.vhost_http_timeout
        self.head_timeout = HEAD_TIMEOUT
        self.linger_timeout = LINGER_TIMEOUT
        self.max_idle_work = MAX_IDLE_WORK
        self.idle_work_kept = IDLE_WORK_KEPT
        self.idle_work_timeout = IDLE_WORK_TIMEOUT
        self.surplus_idle_timeout = SURPLUS_IDLE_TIMEOUT
        self.not_found_page = load_not_found_page(config.custom_404_page, self._log)
        self.connections = set()
        self.factory = VhostFactory(self)

    def create_proxy(self, control, message) -> HttpProxy:
        return HttpProxy(self.context, control, message, self)

    def buffered_bytes(self) -> int:
        """Bytes of HTTP traffic this process holds right now (diagnostic)."""
        return sum(_held_by(c) for c in list(self.connections))


class VhostFactory(Factory):
    noisy = False  # no "Starting factory <... at 0x...>" lines

    def __init__(self, vhost):
        self.vhost = vhost

    def buildProtocol(self, addr):
        return VhostConnection(self.vhost)


def _held_by(connection) -> int:
    """Bytes of *connection* (a VhostConnection) and of its current
    exchange's work connection held in this process."""
    total = len(connection.http.trailing_data[0])
    total += write_buffered(connection.transport)
    exchange = connection._exchange
    if exchange is not None and exchange.work is not None:
        total += write_buffered(exchange.work.transport)
        total += len(exchange.backend.trailing_data[0])
    return total
