"""
``type = tcp`` proxies: a listener on the relay's ``remote_port`` whose
every user connection is joined to one of the client's work connections.
Which port that is (``allow_ports``, taken, remembered per name) is the
server's :class:`~labrelay.server.ports.PortAllocator`'s choice.

A user connection is paused the moment it is accepted and stays paused
until a work connection is spliced to it, so nothing it sends is read (and
buffered) before there is somewhere to put it.

When a user connection closes, one info line says so with ``key=value``
fields: ``proxy``, ``run_id``, ``user_addr``, ``bytes_in`` (from the user),
``bytes_out`` (towards the user, as the work connection carried them) and
``duration_ms``.
"""

from twisted.internet.error import CannotListenError
from twisted.internet.protocol import Factory
from twisted.logger import Logger

from ..errors import ProxyError
from ..peers import describe, host_port
from ..relay import RelayedProtocol, set_no_delay

# ProxyBase and join_user_to_work live in proxy_base (shared with http);
# they are re-exported here for existing imports.
from .proxy_base import (
    ProxyBase,
    WaitsForWork,
    join_user_to_work,
    user_close_fields,
)

__all__ = ["ProxyBase", "TcpProxy", "UserConnection", "join_user_to_work"]


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
        self._started = self.proxy.context.clock.seconds()
        self.peer = describe(self.transport)
        self.proxy.connections.add(self)
        self.proxy.context.connections.add(self)
        self.proxy.start_user_connection(self)

    def connection_ended(self, reason):
        self._ended = True
        self.proxy.connections.discard(self)
        self.proxy.context.connections.remove(self)
        self.stop_waiting()
        proxy = self.proxy
        self._log.info(
            "user connection close {kv}",
            **user_close_fields(
                proxy,
                self.peer,
                self.sink,
                proxy.context.clock.seconds() - self._started,
            ),
        )

    @property
    def ended(self) -> bool:
        return self._ended


class _UserFactory(Factory):
    noisy = False  # no "Starting factory <... at 0x...>" lines

    def __init__(self, proxy):
        self.proxy = proxy

    def buildProtocol(self, addr):
        return UserConnection(self.proxy)


class TcpProxy(ProxyBase):
    type = "tcp"

    def __init__(self, context, control, message):
        super().__init__(context, control, message)
        self._port = None
        self.remote_port = 0

    def start(self) -> str:
        limit = self.context.config.max_ports_per_client
        tcp_count = sum(
            1 for p in self.control.proxies.values() if p.type in ("tcp", "udp")
        )
        if limit > 0 and tcp_count >= limit:
            raise ProxyError("exceed the max_ports_per_client")
        self.remote_port = self.context.ports.allocate(
            self.name, self.message.remote_port, self._listen
        )
        return f":{self.remote_port}"

    def _listen(self, port: int) -> int:
        try:
            self._port = self.context.reactor.listenTCP(
                port, _UserFactory(self), interface=self.context.config.proxy_bind_addr
            )
        except CannotListenError as e:
            raise ProxyError(f"port unavailable: {e.socketError}") from None
        return self._port.getHost().port

    def start_user_connection(self, user) -> None:
        # As frp: the address the user connected to (the accepted socket's
        # own address), not the listener's, which may be 0.0.0.0.
        dst = host_port(user.transport.getHost())
        self.get_work_connection(
            user, lambda work: join_user_to_work(self, user, work, dst=dst)
        )

    def close(self) -> None:
        if self._port is not None:
            self._port.stopListening()
            self._port = None
            self.context.ports.release(self.remote_port, self.name)
