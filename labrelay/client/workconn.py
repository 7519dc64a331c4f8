"""
The client's work connections: each announces itself with NewWorkConn,
waits (possibly a long time, in the server's pool) for StartWorkConn, then
dials the proxy's local service and is spliced to it (a udp proxy's
carries datagrams instead: :mod:`~labrelay.client.udp_work`).

While the local dial is in progress the work connection is paused, and
bytes that came right behind StartWorkConn are kept and relayed first.
"""

import time

from twisted.internet.protocol import Factory
from twisted.logger import Logger

from ..endpoints import tcp_client_endpoint
from ..errors import ProtocolError
from ..kernel_splice import make_splice
from ..peers import describe, set_keepalive
from ..protocol import messages
from ..protocol.auth import privilege_key
from ..protocol.codec import PayloadCodec
from ..protocol.framing import MessageParser, encode_message
from ..relay import RelayedProtocol, set_no_delay
from ..writethrough import write_now
from .udp_work import UdpWorkLink

#: Seconds to connect to a local service.
LOCAL_DIAL_TIMEOUT = 10


def local_endpoint(reactor, host: str, port: int):
    """
    The endpoint to a proxy's local service (see
    :func:`~labrelay.endpoints.tcp_client_endpoint`).
    """
    return tcp_client_endpoint(reactor, host, port, timeout=LOCAL_DIAL_TIMEOUT)


def quiet_factory(build):
    """A factory for one connection that does not log its start and stop."""
    factory = Factory.forProtocol(build)
    factory.noisy = False
    return factory


class LocalConnection(RelayedProtocol):
    """The connection to the proxied service (local_ip:local_port)."""

    def __init__(self, connections):
        self._connections = connections

    def connectionMade(self):
        set_no_delay(self.transport)
        self.peer = describe(self.transport)
        self._connections.add(self)

    def connection_ended(self, reason):
        self._connections.remove(self)


class ClientWorkConnection(RelayedProtocol):
    _log = Logger()

    def __init__(self, client, wall_clock=time.time):
        self.client = client
        self._wall_clock = wall_clock
        self._parser = MessageParser()
        self._started = False
        self._pending = b""
        self.peer = "?"

    def connectionMade(self):
        set_no_delay(self.transport)
        self.peer = describe(self.transport)
        self.client.connections.add(self)
        config = self.client.config
        if not config.tcp_mux:
            set_keepalive(self.transport, config.dial_server_keepalive)
        message = messages.NewWorkConn(run_id=self.client.run_id)
        if config.authenticate_new_work_conns:
            now = int(self._wall_clock())
            message = messages.NewWorkConn(
                run_id=self.client.run_id,
                privilege_key=privilege_key(config.token, now),
                timestamp=now,
            )
        write_now(self.transport, encode_message(message))

    def connection_ended(self, reason):
        self.client.connections.remove(self)

    def data_before_splice(self, data):
        if self._started:
            self._pending += data
            return
        self._parser.feed(data)
        try:
            message = self._parser.next_message()
        except ProtocolError as e:
            self._log.warn("work connection: {error}; closing", error=e)
            self.transport.abortConnection()
            return
        if message is None:
            return
        if not isinstance(message, messages.StartWorkConn):
            self._log.warn(
                "work connection: expected StartWorkConn, got {name}; closing",
                name=message.name,
            )
            self.transport.abortConnection()
            return
        self._started = True
        self._pending = self._parser.take_rest()
        self._start(message)

    def _start(self, message) -> None:
        if message.error:
            self._log.warn(
                "server refused a work connection: {error}", error=message.error
            )
            self.transport.loseConnection()
            return
        proxy = self.client.proxy_config(message.proxy_name)
        if proxy is None:
            self._log.warn(
                "StartWorkConn for unknown proxy [{name}]; closing",
                name=message.proxy_name,
            )
            self.transport.loseConnection()
            return
        if proxy.type == "udp":
            pending, self._pending = self._pending, b""
            UdpWorkLink(self.client, proxy, self).start(pending)
            return
        self.transport.pauseProducing()
        endpoint = local_endpoint(self.client.reactor, proxy.local_ip, proxy.local_port)
        local = LocalConnection(self.client.connections)
        d = endpoint.connect(quiet_factory(lambda: local))

        def connected(_):
            codec = None
            if proxy.use_encryption or proxy.use_compression:
                codec = PayloadCodec(
                    self.client.config.token,
                    proxy.use_encryption,
                    proxy.use_compression,
                )
            splice = make_splice(
                self,
                local,
                a_codec=codec,
                description=f"proxy [{proxy.name}] from "
                f"{message.src_addr}:{message.src_port}",
            )
            pending, self._pending = self._pending, b""
            splice.start(a_pending=pending, b_pending=local.take_early_data())

        def failed(failure):
            self._log.warn(
                "proxy [{name}]: cannot connect to local service "
                "{host}:{port}: {error}",
                name=proxy.name,
                host=proxy.local_ip,
                port=proxy.local_port,
                error=failure.getErrorMessage(),
            )
            self.transport.loseConnection()

        d.addCallbacks(connected, failed)
