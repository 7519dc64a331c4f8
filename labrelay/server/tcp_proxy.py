"""
``type = tcp`` proxies: a listener on the relay's ``remote_port`` whose
every user connection is joined to one of the client's work connections.

A user connection is paused the moment it is accepted and stays paused
until a work connection is spliced to it, so nothing it sends is read (and
buffered) before there is somewhere to put it.
"""

import random

from twisted.internet.defer import CancelledError
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import Factory
from twisted.logger import Logger

from ..errors import NoWorkConnection, ProxyError
from ..peers import describe, host_port
from ..protocol import messages
from ..protocol.codec import PayloadCodec
from ..relay import RelayedProtocol, Splice, set_no_delay

#: How many free ports are tried for ``remote_port = 0`` (frp: 5).
PORT_CANDIDATES = 5


class UserConnection(RelayedProtocol):
    """A connection from a user to a proxy's remote port."""

    _log = Logger()

    def __init__(self, proxy):
        self.proxy = proxy
        self._waiting = None
        self._ended = False

    def connectionMade(self):
        self.transport.pauseProducing()
        set_no_delay(self.transport)
        self.peer = describe(self.transport)
        self.proxy.connections.add(self)
        self.proxy.server.connections.add(self)
        self.proxy.start_user_connection(self)

    def wait_for(self, deferred) -> None:
        self._waiting = deferred

        def done(result):
            self._waiting = None
            return result

        deferred.addBoth(done)

    def connection_ended(self, reason):
        self._ended = True
        self.proxy.connections.discard(self)
        self.proxy.server.connections.remove(self)
        if self._waiting is not None:
            self._waiting.cancel()

    @property
    def ended(self) -> bool:
        return self._ended


class _UserFactory(Factory):
    def __init__(self, proxy):
        self.proxy = proxy

    def buildProtocol(self, addr):
        return UserConnection(self.proxy)


def join_user_to_work(proxy, user, work, *, dst=("", 0)) -> Splice:
    """
    Send StartWorkConn on *work* and splice it to *user* (a RelayedProtocol).
    Shared by every proxy type.
    """
    src_addr, src_port = host_port(user.transport.getPeer())
    dst_addr, dst_port = dst
    work.send(messages.StartWorkConn(
        proxy_name=proxy.name, src_addr=src_addr, src_port=src_port,
        dst_addr=dst_addr, dst_port=dst_port))
    codec = None
    if proxy.use_encryption or proxy.use_compression:
        codec = PayloadCodec(proxy.server.config.token, proxy.use_encryption,
                             proxy.use_compression)
    splice = Splice(user, work, b_codec=codec, on_close=proxy.splice_closed,
                    description=f"proxy [{proxy.name}] {user.peer}")
    proxy.splice_opened(splice)
    splice.start(a_pending=user.take_early_data(),
                 b_pending=work.take_early_data())
    return splice


class ProxyBase:
    """What every proxy type shares: its owner, its counters, its work conns."""

    _log = Logger()
    type = ""

    def __init__(self, server, control, message):
        self.server = server
        self.control = control
        self.message = message
        self.name = message.proxy_name
        self.use_encryption = message.use_encryption
        self.use_compression = message.use_compression
        self.connections = set()
        self.bytes_in = 0    # from users
        self.bytes_out = 0   # to users
        self.total_connections = 0
        self.active_splices = 0

    def get_work_connection(self, user, on_ready) -> None:
        """
        Find a live work connection for *user* and call ``on_ready(work)``;
        a connection that died while pooled is skipped (up to pool_count + 1
        tries, as frp); no connection in time closes *user*.
        """
        attempts = [max(self.control.login.pool_count, 0) + 1]

        def try_once():
            try:
                d = self.control.pool.get()
            except NoWorkConnection as e:
                failed(e)
                return
            user.wait_for(d)
            d.addCallbacks(got, errored)

        def got(work):
            if user.ended:
                if work.alive:
                    self.control.pool.put(work)
                return
            if not work.alive:
                attempts[0] -= 1
                if attempts[0] > 0:
                    try_once()
                else:
                    failed(NoWorkConnection("every work connection was dead"))
                return
            on_ready(work)

        def errored(failure):
            if failure.check(CancelledError):
                return None  # the user went away while waiting
            if failure.check(NoWorkConnection):
                failed(failure.value)
                return None
            return failure

        def failed(error):
            if user.ended:
                return
            self._log.warn("proxy [{name}] {peer}: {error}; closing the user "
                           "connection", name=self.name, peer=user.peer,
                           error=error)
            self.user_refused(user, error)

        try_once()

    def user_refused(self, user, error) -> None:
        user.transport.abortConnection()

    def splice_opened(self, splice) -> None:
        self.total_connections += 1
        self.active_splices += 1

    def splice_closed(self, splice) -> None:
        self.active_splices -= 1
        self.bytes_in += splice.bytes_a_to_b
        self.bytes_out += splice.bytes_b_to_a


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
        host = self._port.getHost() if self._port else None
        dst = (getattr(host, "host", ""), getattr(host, "port", 0))
        self.get_work_connection(
            user, lambda work: join_user_to_work(self, user, work, dst=dst))

    def close(self) -> None:
        if self._port is not None:
            self._port.stopListening()
            self._port = None
            self.server.registry.release_port(self.remote_port, self.name)
