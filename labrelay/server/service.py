"""
The relay server as a Twisted service: the bind-port listener and the
decisions that span clients (login, run_id replacement, work-connection
routing, which proxy type serves a NewProxy).

Each accepted connection is first sniffed for TLS (``labrelay.sniff``), then
becomes a yamux session whose streams are frp connections (``tcp_mux =
true``) or is itself one frp connection.
"""

import secrets

from twisted.application import service
from twisted.application.internet import StreamServerEndpointService
from twisted.internet.defer import DeferredList
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import Factory
from twisted.logger import Logger

from ..logs import install_log_observer

from .. import FRP_VERSION
from ..endpoints import server_endpoint_description
from ..errors import ProxyError
from ..protocol import messages
from ..protocol.auth import check_privilege_key
from ..sniff import SniffingFactory
from ..tracking import ConnectionSet
from ..mux.session import YamuxSession
from ..peers import describe, set_keepalive
from ..relay import set_no_delay
from .mismatch import SERVER_MUX_ON, looks_like_plain_frp, plain_refusal
from .connection import FIRST_MESSAGE_TIMEOUT, ServerConnection
from .control import ControlSession
from .registry import Registry
from .tcp_proxy import TcpProxy
from .vhost import Vhost


def new_run_id() -> str:
    """16 lowercase hex characters, as frp."""
    return secrets.token_hex(8)


class ServerSession(YamuxSession):
    """The server's yamux session; refuses plain frp clients clearly."""

    _log = Logger()
    _first = True

    def __init__(self, server, **kwargs):
        super().__init__(**kwargs)
        self._server = server

    def connectionMade(self):
        super().connectionMade()
        set_no_delay(self.transport)
        set_keepalive(self.transport, self._server.config.tcp_keepalive)

    def dataReceived(self, data):
        if self._first and data:
            self._first = False
            if looks_like_plain_frp(data):
                self._log.warn("{peer}: {error}", peer=describe(self.transport),
                               error=SERVER_MUX_ON)
                self.transport.write(plain_refusal(SERVER_MUX_ON))
                self.transport.loseConnection()
                return
        super().dataReceived(data)


class _FrpConnectionFactory(Factory):
    """Builds what runs on each accepted (and TLS-unwrapped) connection."""

    def __init__(self, server):
        self.server = server

    def buildProtocol(self, addr):
        server = self.server
        if server.config.tcp_mux:
            session = ServerSession(
                server, is_client=False, clock=server.clock,
                accept_stream=lambda stream: ServerConnection(server),
                keepalive_interval=server.config.tcp_mux_keepalive_interval)
            server.sessions.add(session)
            # A session that never opens a stream holds a socket for nothing.
            idle = server.clock.callLater(server.first_message_timeout,
                                          self._idle_session, session)

            def closed(_):
                server.sessions.discard(session)
                if idle.active():
                    idle.cancel()

            session.when_closed().addBoth(closed)
            return session
        return ServerConnection(server)


    def _idle_session(self, session):
        if session.streams_open == 0:
            self.server._log.warn(
                "{peer}: yamux session opened no stream within {seconds}s; "
                "closing", peer=describe(session.transport),
                seconds=self.server.first_message_timeout)
            session.close()


class _VhostListener(StreamServerEndpointService):
    """The vhost port's listener; tells the vhost which port it bound, so
    NewProxyResp names it (tests bind port 0)."""

    vhost = None

    def privilegedStartService(self):
        super().privilegedStartService()

        def listening(port):
            self.vhost.port = port.getHost().port
            return port

        self._waitingForPort.addCallback(listening)


class RelayServer(service.MultiService):
    #: set by the tap: twistd's log observer built from the config
    log_observer = None

    """
    :param config: a :class:`labrelay.config.ServerConfig`.
    :param tls_options: server TLS options (``labrelay.tls``).
    :param listen: an endpoint description overriding bind_addr/bind_port
        (tests listen on port 0).
    :param vhost_listen: likewise for proxy_bind_addr/vhost_http_port; the
        HTTP vhost runs when vhost_http_port > 0 or this is given.
    """

    _log = Logger()

    def __init__(self, config, reactor, tls_options, listen=None,
                 vhost_listen=None):
        super().__init__()
        self.config = config
        self.reactor = reactor
        self.clock = reactor
        self.registry = Registry(reactor)
        self.vhost = None
        self.first_message_timeout = FIRST_MESSAGE_TIMEOUT
        self.connections = ConnectionSet()  # frp and user connections
        self.sessions = set()               # yamux sessions (tcp_mux)
        self._sniffer = factory = SniffingFactory(
            _FrpConnectionFactory(self), tls_options,
            tls_only=config.tls_only, clock=reactor,
            first_byte_timeout=FIRST_MESSAGE_TIMEOUT)
        description = listen or server_endpoint_description(
            config.bind_addr, config.bind_port)
        self._listener = StreamServerEndpointService(
            serverFromString(reactor, description), factory)
        # Fail start-up (and twistd) when the port cannot be bound, instead
        # of logging and running without a listener.
        self._listener._raiseSynchronously = True
        self._listener.setServiceParent(self)
        self._vhost_listener = None
        if config.vhost_http_port > 0 or vhost_listen:
            self._start_vhost(vhost_listen)

    def _start_vhost(self, description) -> None:
        """The HTTP vhost and its listener, a start-up listener like the
        bind port (a bind failure fails start-up)."""
        config = self.config
        self.vhost = Vhost(self)
        description = description or server_endpoint_description(
            config.proxy_bind_addr, config.vhost_http_port)
        listener = _VhostListener(
            serverFromString(self.reactor, description), self.vhost.factory)
        listener.vhost = self.vhost
        listener._raiseSynchronously = True
        listener.setServiceParent(self)
        self._vhost_listener = listener

    def privilegedStartService(self):
        try:
            super().privilegedStartService()
        except CannotListenError as e:
            # One clear line and a non-zero exit instead of a traceback.
            raise SystemExit(
                f"labrelay-server: cannot listen on {e.interface or '*'}:"
                f"{e.port}: {e.socketError}") from None

    def set_handshake_timeouts(self, seconds: float) -> None:
        """Bound on the first byte, the first message and stream-less
        sessions (tests shorten it)."""
        self.first_message_timeout = seconds
        self._sniffer.first_byte_timeout = seconds

    def when_listening(self):
        """A Deferred firing with the bind port's IListeningPort."""
        return self._listener._waitingForPort

    def when_vhost_listening(self):
        """A Deferred firing with the vhost port's IListeningPort."""
        return self._vhost_listener._waitingForPort

    def setServiceParent(self, parent):
        install_log_observer(parent, self.log_observer)
        return super().setServiceParent(parent)

    def stopService(self):
        for control in list(self.registry.controls.values()):
            control.close("server shutting down")
        d = super().stopService()

        def close_connections(_):
            closing = [session.when_closed() for session in self.sessions]
            for session in list(self.sessions):
                session.close()
            closing.append(self.connections.close_all())
            return DeferredList(closing)

        d.addCallback(close_connections)
        return d

    # Called by ServerConnection for first messages.

    def handle_login(self, connection, login) -> None:
        config = self.config
        if not check_privilege_key(config.token, login.timestamp,
                                   login.privilege_key):
            self._log.warn("{peer}: login refused: wrong token "
                           "(version={version})", peer=connection.peer,
                           version=login.version)
            error = ("token in login doesn't match token from configuration"
                     if config.detailed_errors_to_client
                     else "register control error")
            connection.send(messages.LoginResp(version=FRP_VERSION,
                                               error=error))
            connection.transport.loseConnection()
            return
        run_id = login.run_id or new_run_id()
        old = self.registry.controls.get(run_id)
        if old is not None:
            old.close("replaced by a new login with the same run_id")
        control = ControlSession(self, connection, login, run_id)
        self.registry.add_control(control)
        control.start()

    def handle_new_work_conn(self, connection, message) -> None:
        config = self.config
        control = self.registry.controls.get(message.run_id)
        if control is None or control.closed:
            self._log.warn("{peer}: work connection for unknown run_id "
                           "{run_id!r}; closing", peer=connection.peer,
                           run_id=message.run_id)
            connection.send(messages.StartWorkConn(
                error=f"no client with run_id [{message.run_id}]"))
            connection.transport.loseConnection()
            return
        if config.authenticate_new_work_conns and not check_privilege_key(
                config.token, message.timestamp, message.privilege_key):
            self._log.warn("{peer}: work connection with a wrong privilege "
                           "key; closing", peer=connection.peer)
            connection.send(messages.StartWorkConn(
                error="invalid NewWorkConn"))
            connection.transport.loseConnection()
            return
        control.accept_work_conn(connection)

    def create_proxy(self, control, message):
        kind = message.proxy_type or "tcp"
        if kind == "tcp":
            return TcpProxy(self, control, message)
        if kind == "http":
            if self.vhost is None:
                raise ProxyError("type [http] needs vhost_http_port set on "
                                 "the server")
            return self.vhost.create_proxy(control, message)
        raise ProxyError(f"proxy type [{kind}] is not supported by labrelay "
                         f"yet")
