"""
``type = tcp`` proxies: a listener on the relay's ``remote_port`` whose
every user connection is joined to one of the client's work connections.

A user connection is paused the moment it is accepted and stays paused
until a work connection is spliced to it, so nothing it sends is read (and
buffered) before there is somewhere to put it.

When a user connection closes, one info line says so with ``key=value``
fields: ``proxy``, ``run_id``, ``user_addr``, ``bytes_in`` (from the user),
``bytes_out`` (towards the user, as the work connection carried them) and
``duration_ms``.
"""

import random

from twisted.internet.error import CannotListenError
from twisted.internet.protocol import Factory
from twisted.logger import Logger

from ..errors import ProxyError
from ..logs import kv_fields
from ..peers import describe, host_port
from ..relay import RelayedProtocol, set_no_delay
# ProxyBase and join_user_to_work live in proxy_base (shared with http);
# they are re-exported here for existing imports.
from .proxy_base import ProxyBase, WaitsForWork, join_user_to_work

__all__ = ["PORT_CANDIDATES", "ProxyBase", "TcpProxy", "UserConnection",
           "join_user_to_work"]

#: How many free ports are tried for ``remote_port = 0`` (frp: 5).
PORT_CANDIDATES = 5


class UserConnection(WaitsForWork, RelayedProtocol):
    """A connection from a user to a proxy's remote port."""

    _log = Logger()

    def __init__(self, proxy):
        self.proxy = proxy
        self._ended = False
        self._started = 0.0

    def connectionMade(self):
        self.transport.pauseProducing()
        set_no_delay(self.transport)
        self._started = self.proxy.server.clock.seconds()
        self.peer = describe(self.transport)
        self.proxy.connections.add(self)
        self.proxy.server.connections.add(self)
        self.proxy.start_user_connection(self)

    def connection_ended(self, reason):
        self._ended = True
        self.proxy.connections.discard(self)
        self.proxy.server.connections.remove(self)
        self.stop_waiting()
        splice = self.sink
        proxy = self.proxy
        self._log.info("user connection close {kv}", **kv_fields(
            proxy=proxy.name, run_id=proxy.control.run_id,
            user_addr=self.peer,
            bytes_in=splice.bytes_a_to_b if splice is not None else 0,
            bytes_out=splice.bytes_b_to_a if splice is not None else 0,
            duration_ms=round(
                (proxy.server.clock.seconds() - self._started) * 1000)))

    @property
    def ended(self) -> bool:
        return self._ended


class _UserFactory(Factory):
    noisy = False   # no "Starting factory <... at 0x...>" lines

    def __init__(self, proxy):
        self.proxy = proxy

    def buildProtocol(self, addr):
        return UserConnection(self.proxy)


class TcpProxy(ProxyBase):
    type = "tcp"

    def __init__(self, server, control, message):
        super().__init__(server, control, message)
        self._port = None
        self.remote_port = 0

    def start(self) -> str:
        config = self.server.config
        requested = self.message.remote_port
        tcp_count = sum(1 for p in self.control.proxies.values()
                        if p.type == "tcp")
        if config.max_ports_per_client > 0 and \
                tcp_count >= config.max_ports_per_client:
            raise ProxyError("exceed the max_ports_per_client")
        if requested < 0 or requested > 65535:
            raise ProxyError(f"remote_port {requested} is not a port")
        if requested:
            if requested not in config.allow_ports:
                raise ProxyError("port not allowed")
            if self.server.registry.port_taken(requested):
                raise ProxyError("port already used")
            self._listen(requested)
        else:
            self._listen_any()
        self.server.registry.take_port(self.remote_port, self.name)
        return f":{self.remote_port}"

    def _listen(self, port: int) -> None:
        try:
            self._port = self.server.reactor.listenTCP(
                port, _UserFactory(self),
                interface=self.server.config.proxy_bind_addr)
        except CannotListenError as e:
            raise ProxyError(f"port unavailable: {e.socketError}") from None
        self.remote_port = self._port.getHost().port

    def _listen_any(self) -> None:
        registry = self.server.registry
        allowed = self.server.config.allow_ports
        remembered = registry.remembered_port(self.name)
        candidates = []
        if remembered and remembered in allowed:
            candidates.append(remembered)
        if allowed.is_all():
            candidates.append(0)  # the system picks a free port
        else:
            free = [p for p in allowed if not registry.port_taken(p)
                    and p != remembered]
            candidates += random.sample(free, min(PORT_CANDIDATES, len(free)))
        for port in candidates:
            try:
                self._listen(port)
                return
            except ProxyError:
                continue
        raise ProxyError("no available port")

    def start_user_connection(self, user) -> None:
        # As frp: the address the user connected to (the accepted socket's
        # own address), not the listener's, which may be 0.0.0.0.
        dst = host_port(user.transport.getHost())
        self.get_work_connection(
            user, lambda work: join_user_to_work(self, user, work, dst=dst))

    def close(self) -> None:
        if self._port is not None:
            self._port.stopListening()
            self._port = None
            self.server.registry.release_port(self.remote_port, self.name)
