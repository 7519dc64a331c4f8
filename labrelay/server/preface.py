# -*- test-case-name: tests.unit.test_https_proxy,tests.unit.test_tcpmux -*-
"""
Ports that route a raw connection by a name in its first bytes, then
relay it untouched: the HTTPS vhost (the TLS server name,
:mod:`~labrelay.server.https_proxy`) and the tcpmux HTTP CONNECT port
(:mod:`~labrelay.server.tcpmux`).  What the two share lives here:

* :class:`NamedPort`: the port as a whole, its route table (the HTTP
  vhost's :class:`~labrelay.server.vhost.routes.RouteTable`, with one
  location ``""``), its bounds and its live connections; a subclass says
  how a preface is read (:meth:`NamedPort.read_preface`) and answered;
* :class:`NamedRouteProxy`: a proxy registered on such a port by its
  domains (``custom_domains``, ``subdomain``, the HTTP vhost's rules and
  limits, :mod:`~labrelay.server.domains`);
* :class:`PrefaceConnection`: one user connection, from its first byte to
  its splice with a work connection.

Bounds, because everything before the route is chosen comes from anyone
who can reach the port: a preface is at most :attr:`NamedPort.max_preface`
bytes and must be complete within :attr:`NamedPort.timeout` seconds (the
connection is closed otherwise, and the port keeps serving); connections
still sending their preface count as unauthenticated ones, at most
``max_unauthenticated_per_source`` per source address and
``max_unauthenticated_connections`` in all (the bind port's limits,
counted separately for each port), and a connection beyond them is
closed at once.  Once routed, the connection is paused until its work
connection is spliced (as a tcp user connection), and the bytes of the
preface that belong to the backend are replayed to it first.
"""

from __future__ import annotations

from collections import Counter
from typing import Optional

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import Factory
from twisted.logger import Logger

from ..peers import describe, host_port
from ..relay import RelayedProtocol, set_no_delay
from . import domains as named_domains
from .proxy_base import (
    ProxyBase,
    WaitsForWork,
    join_user_to_work,
    user_close_fields,
)
from .vhost.routes import RouteTable

#: Seconds a connection has to send its preface (frp: 30 s for the whole
#: vhost handshake).
PREFACE_TIMEOUT = 30


class PrefaceError(Exception):
    """The preface is refused; *answer* (bytes) is written before the
    close."""

    def __init__(self, reason: str, answer: bytes = b""):
        super().__init__(reason)
        self.answer = answer


@attrs.frozen
class Preface:
    """What a complete preface says: the name to route by, the
    ``Proxy-Authorization`` user and password (tcpmux), and the bytes to
    replay to the backend before the rest of the connection."""

    host: str
    replay: bytes
    user: str = ""
    password: str = ""


class NamedRouteProxy(ProxyBase):
    """A proxy routed by its domains on a :class:`NamedPort`."""

    def __init__(self, context, control, message, port):
        super().__init__(context, control, message)
        self.port = port
        self.domains = []
        self.route_by_http_user = ""

    def start(self) -> str:
        domains = named_domains.wanted_domains(
            self.message, self.context.config.subdomain_host
        )
        named_domains.check_route_limits(
            self.context.config, domains, 1, len(self.port.routes)
        )
        self.port.routes.add(
            [(domain, "", self.route_by_http_user) for domain in domains], self
        )
        self.domains = domains
        return named_domains.published_addresses(domains, self.port.port)

    def close(self) -> None:
        self.port.routes.remove(self)


class NamedPort:
    """
    One port routing by name (see the module docstring).  Subclasses set
    :attr:`kind` and implement :meth:`read_preface`, :meth:`not_found` and
    (optionally) :meth:`routed`.

    :ivar port: the port reported in NewProxyResp (the bound one once
        listening).
    """

    _log = Logger()
    kind = ""
    max_preface = 0

    def __init__(self, context, port: int):
        self.context = context
        self.clock = context.clock
        self.routes = RouteTable()
        self.port = port
        self.timeout = PREFACE_TIMEOUT
        self.connections = set()
        self.pending = Counter()  # source host -> connections before routing
        self.factory = _PrefaceFactory(self)

    def read_preface(self, data: bytes) -> Optional[Preface]:
        """The :class:`Preface` at the start of *data* (all bytes received
        so far), None while incomplete; :class:`PrefaceError` to refuse."""
        raise NotImplementedError

    def not_found(self, user, preface: Preface) -> bytes:
        """What to write to *user* before closing it: no route."""
        return b""

    def authorize(self, user, proxy, preface: Preface) -> Deferred:
        """Whether *user* may reach *proxy* (a Deferred of a bool; it may
        wait for the password throttle)."""
        return succeed(True)

    def unauthorized(self, preface: Preface) -> bytes:
        """What to write before closing a connection :meth:`authorize`
        refused."""
        return b""

    def accepted(self, preface: Preface) -> bytes:
        """What to write to a connection once it is routed."""
        return b""

    # Admission of connections that have not sent their preface.

    def admit(self, host: str) -> bool:
        config = self.context.config
        per_source = config.max_unauthenticated_per_source
        total = config.max_unauthenticated_connections
        if 0 < per_source <= self.pending[host]:
            return False
        if 0 < total <= sum(self.pending.values()):
            return False
        self.pending[host] += 1
        return True

    def release(self, host: str) -> None:
        self.pending[host] -= 1
        if self.pending[host] <= 0:
            del self.pending[host]


class _PrefaceFactory(Factory):
    noisy = False  # no "Starting factory <... at 0x...>" lines

    def __init__(self, port):
        self.port = port

    def buildProtocol(self, addr):
        return PrefaceConnection(self.port)


class PrefaceConnection(WaitsForWork, RelayedProtocol):
    """One user connection on a :class:`NamedPort`."""

    _log = Logger()

    def __init__(self, port: NamedPort):
        self.port = port
        self.peer = "?"
        self.proxy = None
        self._host = None  # the source host while counted as pending
        self._buffer = bytearray()
        self._deciding = False  # paused while authorize() decides
        self._timer = None
        self._ended = False
        self._started = 0.0

    @property
    def ended(self) -> bool:
        return self._ended

    def connectionMade(self):
        set_no_delay(self.transport)
        self.peer = describe(self.transport)
        host = host_port(self.transport.getPeer())[0]
        self._started = self.port.clock.seconds()
        self.port.connections.add(self)
        self.port.context.connections.add(self)
        if not self.port.admit(host):
            self._log.debug(
                "{kind} {peer}: too many connections sending a preface",
                kind=self.port.kind,
                peer=self.peer,
            )
            self.transport.abortConnection()
            return
        self._host = host
        self._timer = self.port.clock.callLater(self.port.timeout, self._too_slow)

    def _too_slow(self) -> None:
        self._timer = None
        self._refuse(f"no complete preface in {self.port.timeout}s")

    def _leave_pending(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._host is not None:
            self.port.release(self._host)
            self._host = None

    def _refuse(self, reason: str, answer: bytes = b"") -> None:
        self._log.debug(
            "{kind} {peer}: {reason}; closing",
            kind=self.port.kind,
            peer=self.peer,
            reason=reason,
        )
        self._leave_pending()
        self._buffer = bytearray()
        if answer:
            self.transport.write(answer)
            self.transport.loseConnection()
        else:
            self.transport.abortConnection()

    def data_before_splice(self, data):
        if self.proxy is not None:
            super().data_before_splice(data)  # replayed after the preface
            return
        if self._host is None or self._deciding:
            return  # refused, or held: nothing more is read
        self._buffer += data
        try:
            preface = self.port.read_preface(bytes(self._buffer))
        except PrefaceError as e:
            self._refuse(str(e), e.answer)
            return
        if preface is None:
            if len(self._buffer) > self.port.max_preface:
                self._refuse(f"preface larger than {self.port.max_preface} bytes")
            return
        self._route(preface)

    def _route(self, preface: Preface) -> None:
        port = self.port
        proxy = port.routes.lookup(preface.host, "", preface.user)
        if proxy is None:
            self._refuse(
                f"no proxy for [{preface.host}]", port.not_found(self, preface)
            )
            return
        self._buffer = bytearray()
        self._deciding = True
        self.transport.pauseProducing()
        decided = port.authorize(self, proxy, preface)
        decided.addCallback(self._authorized, proxy, preface)
        decided.addErrback(
            lambda f: self._log.failure("{kind}: routing", f, kind=port.kind)
        )

    def _authorized(self, allowed: bool, proxy, preface: Preface) -> None:
        self._deciding = False
        if self._ended or self._host is None:
            return  # gone, or past its deadline, meanwhile
        port = self.port
        if not allowed:
            self._refuse(
                f"not authorized for proxy [{proxy.name}]", port.unauthorized(preface)
            )
            return
        self._leave_pending()
        answer = port.accepted(preface)
        if answer:
            self.transport.write(answer)
        self.__dict__["early_data"] = [preface.replay]
        self.proxy = proxy
        proxy.connections.add(self)
        dst = host_port(self.transport.getHost())
        proxy.get_work_connection(
            self, lambda work: join_user_to_work(proxy, self, work, dst=dst)
        )

    def eof_before_splice(self):
        self._refuse("input ended before the splice")

    def connection_ended(self, reason):
        self._ended = True
        self._leave_pending()
        self.port.connections.discard(self)
        self.port.context.connections.remove(self)
        self.stop_waiting()
        proxy = self.proxy
        if proxy is None:
            return
        proxy.connections.discard(self)
        self._log.info(
            "user connection close {kv}",
            **user_close_fields(
                proxy, self.peer, self.sink, self.port.clock.seconds() - self._started
            ),
        )
