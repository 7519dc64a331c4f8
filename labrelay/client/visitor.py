# -*- test-case-name: tests.integration.test_stcp -*-
"""
The client's stcp visitors: a local listener per visitor section
(``bind_addr:bind_port``) whose every accepted connection gets its own
*visitor connection* to the server (a new TCP connection, or a yamux
stream of the client's session under tcp_mux).  The visitor connection
announces itself with NewVisitorConn (the client's run_id, the target
proxy ``server_user.server_name``, ``md5_hex(sk + timestamp)``), waits
for NewVisitorConnResp, and is then spliced to the local connection,
with encryption and compression keyed by ``sk`` as the visitor section
asks (protocol.md §8).

Bounds: the local connection is paused until the splice, so nothing it
sends is buffered before; the server has :data:`ANSWER_TIMEOUT` seconds
to answer (frpc: 10 s); a local connection accepted while the client is
not logged in is closed at once; at most :data:`MAX_LOCAL_CONNECTIONS`
local connections per visitor are open at a time (more are closed).
"""

import time

from twisted.internet.error import CannotListenError
from twisted.internet.protocol import Factory
from twisted.logger import Logger

from ..errors import ProtocolError
from ..kernel_splice import make_splice
from ..peers import describe, set_keepalive
from ..protocol import messages
from ..protocol.auth import privilege_key
from ..protocol.codec import PayloadCodec
from ..protocol.framing import MessageParser, encode_message
from ..relay import RelayedProtocol, set_no_delay
from ..writethrough import write_now

#: Seconds the server has to answer a NewVisitorConn (frpc: 10).
ANSWER_TIMEOUT = 10
#: Local connections of one visitor open at a time.
MAX_LOCAL_CONNECTIONS = 1024


def sign_key(sk: str, timestamp: int) -> str:
    """frp's visitor signature: ``md5_hex(sk + decimal(timestamp))``
    (GetAuthKey, the same formula as a login's privilege key)."""
    return privilege_key(sk, timestamp)


class VisitorLocalConnection(RelayedProtocol):
    """One connection accepted on a visitor's bind port."""

    _log = Logger()

    def __init__(self, visitor):
        self.visitor = visitor
        self.peer = "?"
        self.server = None  # its VisitorServerConnection

    def connectionMade(self):
        self.transport.pauseProducing()
        set_no_delay(self.transport)
        self.peer = describe(self.transport)
        visitor = self.visitor
        visitor.client.connections.add(self)
        visitor.local.add(self)
        if len(visitor.local) > MAX_LOCAL_CONNECTIONS:
            self._log.warn(
                "visitor [{name}]: {limit} local connections open; closing {peer}",
                name=visitor.config.name,
                limit=MAX_LOCAL_CONNECTIONS,
                peer=self.peer,
            )
            self.transport.abortConnection()
            return
        visitor.open_visitor_connection(self)

    def connection_ended(self, reason):
        self.visitor.local.discard(self)
        self.visitor.client.connections.remove(self)
        server = self.server
        if self.sink is None and server is not None and server.transport is not None:
            server.transport.loseConnection()  # gone before the splice


class VisitorServerConnection(RelayedProtocol):
    """One visitor connection to the server, for one local connection."""

    _log = Logger()

    def __init__(self, visitor, local, wall_clock=time.time):
        self.visitor = visitor
        self.local = local
        self._wall_clock = wall_clock
        self._parser = MessageParser()
        self._answered = False
        self._timer = None
        self.peer = "?"

    def connectionMade(self):
        set_no_delay(self.transport)
        self.peer = describe(self.transport)
        client, config = self.visitor.client, self.visitor.config
        client.connections.add(self)
        if not client.config.tcp_mux:
            set_keepalive(self.transport, client.config.dial_server_keepalive)
        now = int(self._wall_clock())
        message = messages.NewVisitorConn(
            run_id=client.run_id,
            proxy_name=config.target(client.config.user),
            sign_key=sign_key(config.sk, now),
            timestamp=now,
            use_encryption=config.use_encryption,
            use_compression=config.use_compression,
        )
        write_now(self.transport, encode_message(message))
        self._timer = client.clock.callLater(ANSWER_TIMEOUT, self._no_answer)

    def _no_answer(self):
        self._timer = None
        self._fail(f"no NewVisitorConnResp within {ANSWER_TIMEOUT}s")

    def connection_ended(self, reason):
        self.visitor.client.connections.remove(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._answered:
            self.local.transport.loseConnection()

    def data_before_splice(self, data):
        if self._answered:
            super().data_before_splice(data)
            return
        self._parser.feed(data)
        try:
            message = self._parser.next_message()
        except ProtocolError as e:
            self._fail(str(e))
            return
        if message is None:
            return
        if not isinstance(message, messages.NewVisitorConnResp):
            self._fail(f"expected NewVisitorConnResp, got {message.name}")
            return
        self._answered = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        rest = self._parser.take_rest()
        if rest:
            super().data_before_splice(rest)
        if message.error:
            self._fail(f"start new visitor connection error: {message.error}")
            return
        self._splice()

    def _fail(self, why: str) -> None:
        self._log.warn(
            "visitor [{name}]: {error}; closing {peer}",
            name=self.visitor.config.name,
            error=why,
            peer=self.local.peer,
        )
        self._answered = True
        self.transport.loseConnection()
        self.local.transport.loseConnection()

    def _splice(self) -> None:
        config = self.visitor.config
        codec = None
        if config.use_encryption or config.use_compression:
            codec = PayloadCodec(
                config.sk, config.use_encryption, config.use_compression
            )
        splice = make_splice(
            self,
            self.local,
            a_codec=codec,
            description=f"visitor [{config.name}] {self.local.peer}",
        )
        splice.start(
            a_pending=self.take_early_data(), b_pending=self.local.take_early_data()
        )


class Visitor:
    """One stcp visitor section: its listener and its open connections."""

    _log = Logger()

    def __init__(self, client, config):
        self.client = client
        self.config = config
        self.local = set()
        self._port = None

    def start(self) -> None:
        config = self.config
        factory = Factory.forProtocol(lambda: VisitorLocalConnection(self))
        factory.noisy = False
        try:
            self._port = self.client.reactor.listenTCP(
                config.bind_port, factory, interface=config.bind_addr
            )
        except CannotListenError as e:
            self._log.error(
                "visitor [{name}]: cannot listen on {addr}:{port}: {error}",
                name=config.name,
                addr=config.bind_addr,
                port=config.bind_port,
                error=e.socketError,
            )
            return
        self._log.info(
            "visitor [{name}] listening on {addr}:{port} for stcp proxy [{target}]",
            name=config.name,
            addr=config.bind_addr,
            port=self._port.getHost().port,
            target=config.target(self.client.config.user),
        )

    @property
    def port(self) -> int:
        """The port listened on (0: not listening)."""
        return self._port.getHost().port if self._port is not None else 0

    def open_visitor_connection(self, local) -> None:
        control = self.client.control
        if control is None or not control.login_ok:
            self._log.warn(
                "visitor [{name}]: not logged in to the server; closing {peer}",
                name=self.config.name,
                peer=local.peer,
            )
            local.transport.loseConnection()
            return
        local.server = VisitorServerConnection(self, local)
        self.client.open_frp_connection(
            local.server,
            "visitor connection",
            on_failure=lambda: local.transport.loseConnection(),
        )

    def stop(self):
        """Stop listening (open connections are closed with the client's)."""
        port, self._port = self._port, None
        if port is not None:
            return port.stopListening()
        return None
