"""
The relay server as a Twisted service: the bind-port listener and the
decisions that span clients (login, run_id replacement, work-connection
routing, which proxy type serves a NewProxy).

Each accepted connection is first admitted (the flood caps of
``labrelay.server.guard``), sniffed for TLS (``labrelay.sniff``), then
becomes a yamux session whose streams are frp connections (``tcp_mux =
true``) or is itself one frp connection.

Authentication of a first message, in order: a source with too many
delayed failures is refused without a key check; a wrong key is answered
after a growing delay; then ``auth_timestamp_skew`` (when on), the replay
cache and, for a Login naming a live run_id, that the run_id belongs to the
same ``user`` (no takeover across users).  A NewWorkConn only ever joins
the pool of the control its run_id names, and is authenticated with the
settings that control logged in with.

Run from a config file, the server reloads it on SIGHUP (:meth:`reload`,
:mod:`labrelay.server.reload`), and under systemd (``Type=notify``) it
reports READY once every startup listener listens, RELOADING/READY around a
reload and STOPPING (:mod:`labrelay.sdnotify`).
"""

import secrets

from twisted.application import service
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..listeners import StartupListener
from ..logs import install_log_observer, set_log_level

from .. import FRP_VERSION
from ..config import ConfigError
from ..endpoints import server_endpoint_description
from ..errors import ProxyError
from ..protocol import messages
from ..protocol.auth import check_privilege_key, timestamp_skew_error
from ..sniff import SniffingFactory
from ..tracking import ConnectionSet
from ..mux.budget import BufferBudget
from ..mux.session import YamuxSession
from ..peers import describe, set_keepalive
from ..relay import set_no_delay
from ..sdnotify import Notifier
from .mismatch import SERVER_MUX_ON, looks_like_plain_frp, plain_refusal
from .connection import FIRST_MESSAGE_TIMEOUT, ServerConnection
from .control import ControlSession
from .guard import RateLimitedLog, ReplayCache, SourceGuard
from .reload import SighupHandler, reload_from_file
from .stats import ServerStats, StatsRegistry
from .tcp_proxy import TcpProxy
from .vhost import Vhost


def _observe(d: Deferred) -> Deferred:
    """A new Deferred with *d*'s result; *d*'s own chain is left as it was
    (a listener service's stopService reads the port from it)."""
    seen = Deferred()

    def tee(result):
        if isinstance(result, Failure):
            seen.errback(result)
        else:
            seen.callback(result)
        return result

    d.addBoth(tee)
    return seen


def new_run_id() -> str:
    """16 lowercase hex characters, as frp."""
    return secrets.token_hex(8)


class ServerSession(YamuxSession):
    """The server's yamux session; refuses plain frp clients clearly."""

    _log = Logger()
    _first = True
    #: counts this session as unauthenticated until a stream logs in
    admission = None

    def __init__(self, server, **kwargs):
        super().__init__(accept_stream=self._frp_stream, **kwargs)
        self._server = server

    def adopt_admission(self, admission) -> None:
        self.admission = admission

    #: streams that have not yet said what they are (Login, NewWorkConn);
    #: a real frpc has one or two at a time, a flood of SYNs has thousands,
    #: each holding a protocol and a timer until first_message_timeout
    MAX_UNIDENTIFIED_STREAMS = 64

    def _frp_stream(self, stream):
        waiting = [c for c in getattr(self, "_unidentified", ())
                   if c.alive and c.control is None and c.work_owner is None]
        if len(waiting) >= self.MAX_UNIDENTIFIED_STREAMS:
            if len(waiting) == self.MAX_UNIDENTIFIED_STREAMS:
                self._log.warn(
                    "{peer}: {count} yamux streams opened without a first "
                    "message; refusing more", peer=describe(self.transport),
                    count=len(waiting))
            self._unidentified = waiting
            return None
        connection = ServerConnection(self._server, admission=self.admission)
        waiting.append(connection)
        self._unidentified = waiting
        return connection

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
                keepalive_interval=server.config.tcp_mux_keepalive_interval,
                budget=server.buffer_budget)
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


class _VhostListener(StartupListener):
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
    """
    :param config: a :class:`labrelay.config.ServerConfig`.
    :param tls_options: server TLS options (``labrelay.tls``).
    :param listen: an endpoint description overriding bind_addr/bind_port
        (tests listen on port 0).
    :param vhost_listen: likewise for proxy_bind_addr/vhost_http_port; the
        HTTP vhost runs when vhost_http_port > 0 or this is given.
    :param dashboard_listen: likewise for dashboard_addr/dashboard_port;
        the dashboard runs when dashboard_port > 0 or this is given.
    :param config_path: the config file that :meth:`reload` (and SIGHUP)
        reads again (None: no file, no SIGHUP handler).
    :param notifier: a :class:`labrelay.sdnotify.Notifier` (default: for
        ``$NOTIFY_SOCKET``, which does nothing when it is unset).
    """

    #: set by the tap: twistd's log observer built from the config
    log_observer = None

    _log = Logger()

    def __init__(self, config, reactor, tls_options, listen=None,
                 vhost_listen=None, dashboard_listen=None, config_path=None,
                 notifier=None):
        super().__init__()
        self.config = config
        self.config_path = config_path
        self.notifier = notifier if notifier is not None \
            else Notifier.from_environ()
        self.sighup = SighupHandler(reactor, self._reload_from_signal)
        self._ready = None            # fires once every listener listens
        self.reactor = reactor
        self.clock = reactor
        self.stats = ServerStats(reactor)  # traffic per proxy (dashboard)
        self.registry = StatsRegistry(reactor, self.stats)
        self.vhost = None
        self.first_message_timeout = FIRST_MESSAGE_TIMEOUT
        self.connections = ConnectionSet()  # frp and user connections
        self.sessions = set()               # yamux sessions (tcp_mux)
        self.guard = SourceGuard(
            reactor, max_per_source=config.max_unauthenticated_per_source,
            max_total=config.max_unauthenticated_connections)
        self.replays = ReplayCache(reactor, skew=config.auth_timestamp_skew)
        self.buffer_budget = BufferBudget(config.max_buffered_bytes)
        self.quiet_log = RateLimitedLog(reactor)
        self._sniffer = factory = SniffingFactory(
            _FrpConnectionFactory(self), tls_options,
            tls_only=config.tls_only, clock=reactor,
            first_byte_timeout=FIRST_MESSAGE_TIMEOUT, admit=self._admit)
        description = listen or server_endpoint_description(
            config.bind_addr, config.bind_port)
        self._listener = StartupListener(reactor, description, factory,
                                         program="labrelay-server")
        self._listener.setServiceParent(self)
        self._vhost_listener = None
        if config.vhost_http_port > 0 or vhost_listen:
            self._start_vhost(vhost_listen)
        self.dashboard = None
        if config.dashboard_port > 0 or dashboard_listen:
            from .dashboard import DashboardService  # twisted.web: only if on
            self.dashboard = DashboardService(self, dashboard_listen)
            self.dashboard.setServiceParent(self)

    def _start_vhost(self, description) -> None:
        """The HTTP vhost and its listener, a start-up listener like the
        bind port (a bind failure fails start-up)."""
        config = self.config
        self.vhost = Vhost(self)
        description = description or server_endpoint_description(
            config.proxy_bind_addr, config.vhost_http_port)
        listener = _VhostListener(self.reactor, description,
                                  self.vhost.factory, program="labrelay-server")
        listener.vhost = self.vhost
        listener.setServiceParent(self)
        self._vhost_listener = listener

    def startService(self):
        # Before READY can go out: systemd may send SIGHUP right after it.
        if self.config_path:
            self.sighup.install()
        super().startService()
        listeners = [("bind port", self.when_listening())]
        if self._vhost_listener is not None:
            listeners.append(("vhost port", self.when_vhost_listening()))
        if self.dashboard is not None:
            listeners.append(("dashboard", self.when_dashboard_listening()))
        names = [name for name, _ in listeners]
        self._ready = DeferredList([_observe(d) for _, d in listeners],
                                   fireOnOneErrback=True, consumeErrors=True)
        self._ready.addCallback(self._listening, names)
        self._ready.addErrback(lambda failure: None)  # start-up fails anyway

    def _listening(self, results, names) -> None:
        status = ", ".join(f"{name} {port.getHost().port}"
                           for name, (_, port) in zip(names, results))
        self.notifier.ready(f"listening: {status}")

    def when_ready(self):
        """A Deferred firing once every startup listener listens (after
        :meth:`startService`), when READY is sent to systemd."""
        return _observe(self._ready)

    def set_handshake_timeouts(self, seconds: float) -> None:
        """Bound on the first byte, the first message and stream-less
        sessions (tests shorten it)."""
        self.first_message_timeout = seconds
        self._sniffer.first_byte_timeout = seconds

    def when_listening(self):
        """A Deferred firing with the bind port's IListeningPort."""
        return self._listener.when_listening()

    def when_vhost_listening(self):
        """A Deferred firing with the vhost port's IListeningPort."""
        return self._vhost_listener.when_listening()

    def when_dashboard_listening(self):
        """A Deferred firing with the dashboard's IListeningPort."""
        return self.dashboard.when_listening()

    def setServiceParent(self, parent):
        install_log_observer(parent, self.log_observer)
        return super().setServiceParent(parent)

    def stopService(self):
        self.sighup.restore()
        self.notifier.stopping("stopping")
        self.guard.close()
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

    # Reload.

    def reload(self):
        """
        Re-read :attr:`config_path` and apply what can change without a
        restart (:mod:`labrelay.server.reload`); a ``ReloadResult``.  A bad
        file is logged and raises ConfigError, changing nothing.  systemd
        is told RELOADING, then READY.
        """
        self.notifier.reloading("reloading the configuration")
        try:
            if not self.config_path:
                raise ConfigError("labrelay-server has no config file path")
            result = reload_from_file(self, self.config_path)
        except ConfigError as e:
            self._log.error("reload: {error}; nothing changed", error=e)
            self.notifier.ready(f"reload failed, nothing changed: {e}")
            raise
        except Exception:
            self.notifier.ready("reload failed, nothing changed")
            raise
        status = "reloaded"
        if result.restart_keys:
            status += (f"; waiting for a restart: "
                       f"{', '.join(result.restart_keys)}")
        self.notifier.ready(status)
        return result

    def apply_config(self, config) -> None:
        """
        Run with *config* from now on (a reload: it differs from the
        running one only in reloadable keys), and update what keeps its own
        copy of a value.
        """
        old_level, self.config = self.config.log_level, config
        self.guard.max_per_source = config.max_unauthenticated_per_source
        self.guard.max_total = config.max_unauthenticated_connections
        self.replays.skew = config.auth_timestamp_skew
        self.buffer_budget.limit = config.max_buffered_bytes
        if self.dashboard is not None:
            self.dashboard.set_credentials(config.dashboard_user,
                                           config.dashboard_pwd)
        if not set_log_level(self.log_observer, config.log_level) \
                and config.log_level != old_level:
            self._log.warn("reload: log_level = {level} is not applied: the "
                           "log destination was chosen on twistd's command "
                           "line, not by log_file", level=config.log_level)

    def _reload_from_signal(self) -> None:
        self._log.info("SIGHUP: reloading {path}", path=self.config_path)
        try:
            self.reload()
        except ConfigError:
            pass  # logged by reload()
        except Exception:
            self._log.failure("reload failed")

    # Admission of accepted connections (called by the sniffer).

    def _admit(self, address):
        host = getattr(address, "host", "") or ""
        refusal = self.guard.admission_refusal(host)
        if refusal is None:
            return self.guard.admit(host)
        held = self.quiet_log.allow("admission")
        if held is not None:
            self._log.warn("refusing new connections: {why}; closing them at "
                           "once (this one from {source}; {held} more "
                           "refused since the last such line)", why=refusal,
                           source=host, held=held)
        return None

    # Called by ServerConnection for first messages.

    def _error_text(self, detailed: str, summary: str) -> str:
        return detailed if self.config.detailed_errors_to_client else summary

    def _refuse_login(self, connection, error: str) -> None:
        connection.ignore_input()
        if connection.alive:
            connection.send(messages.LoginResp(version=FRP_VERSION,
                                               error=error))
            connection.transport.loseConnection()

    def _refuse_work_conn(self, connection, error: str) -> None:
        connection.ignore_input()
        if connection.alive:
            connection.send(messages.StartWorkConn(error=error))
            connection.transport.loseConnection()

    def _too_many_failures(self, connection, what: str) -> bool:
        """Refuse at once (no key check) a source whose delayed failure
        answers are all pending; True if it was refused."""
        refusal = self.guard.failure_refusal(connection.source)
        if refusal is None:
            return False
        held = self.quiet_log.allow("failures")
        if held is not None:
            self._log.warn("{peer}: {what} refused without checking it: "
                           "{why} ({held} more refused since the last such "
                           "line)", peer=connection.peer, what=what,
                           why=refusal, held=held)
        return True

    def freshness_error(self, timestamp, key):
        """Why an authenticated message's (timestamp, key) is too old, too
        new or replayed, or None.  The log-only detail names the run_id
        that used a replayed pair first."""
        error = timestamp_skew_error(timestamp, self.clock.seconds(),
                                     self.config.auth_timestamp_skew)
        if error is None:
            error = self.replays.check(timestamp, key)
            if error is not None:
                return error, (f" (first used by run_id "
                               f"{self.replays.first_run_id(timestamp, key)})")
        return error, ""

    def handle_login(self, connection, login) -> None:
        config = self.config
        source = connection.source
        if self._too_many_failures(connection, "login"):
            self._refuse_login(connection, self._error_text(
                f"too many failed logins from {source}; try again later",
                "register control error"))
            return
        if not check_privilege_key(config.token, login.timestamp,
                                   login.privilege_key):
            error = self._error_text("token in login doesn't match token "
                                     "from configuration",
                                     "register control error")
            self._wrong_key(
                connection,
                f"login refused: wrong token (version={login.version})",
                "answering", lambda: self._refuse_login(connection, error))
            return
        error, detail = self.freshness_error(login.timestamp,
                                             login.privilege_key)
        run_id = login.run_id or new_run_id()
        old = self.registry.controls.get(run_id)
        if error is None and old is not None and not old.closed \
                and old.user != login.user:
            error = (f"run_id [{run_id}] belongs to a client of another "
                     f"user")
            detail = f" (user {old.user!r}, logged in from {old.peer})"
        if error is not None:
            self._log.warn("{peer}: login refused: {error}{detail} "
                           "(user={user!r} run_id={run_id!r})",
                           peer=connection.peer, error=error, detail=detail,
                           user=login.user, run_id=login.run_id)
            self._refuse_login(connection, self._error_text(
                error, "register control error"))
            return
        self.guard.record_success(source)
        self.replays.remember(login.timestamp, login.privilege_key, run_id)
        if old is not None:
            old.close("replaced by a new login with the same run_id")
        connection.authenticated()
        control = ControlSession(self, connection, login, run_id)
        self.registry.add_control(control)
        control.start()

    def _wrong_key(self, connection, problem: str, action: str,
                   answer) -> None:
        """
        A wrong privilege key from *connection*: count the failure against
        its source, log it, read nothing more from it, and run *answer*
        (the refusal) after the source's growing delay.
        """
        source = connection.source
        failures, delay = self.guard.record_failure(source)
        self._log.warn("{peer}: {problem}; failure {failures} in a row from "
                       "{source}, {action} in {delay:g}s",
                       peer=connection.peer, problem=problem,
                       failures=failures, source=source, action=action,
                       delay=delay)
        connection.ignore_input()
        self.guard.answer_later(source, delay, answer)

    def handle_new_work_conn(self, connection, message) -> None:
        control = self.registry.controls.get(message.run_id)
        if control is None or control.closed:
            self._log.warn("{peer}: work connection for unknown run_id "
                           "{run_id!r}; closing", peer=connection.peer,
                           run_id=message.run_id)
            self._refuse_work_conn(
                connection, f"no client with run_id [{message.run_id}]")
            return
        # The settings of the control's login: a reload that changed the
        # token or turned this check on leaves a live client's pool alone.
        if control.authenticate_new_work_conns:
            source = connection.source
            if self._too_many_failures(connection, "work connection"):
                self._refuse_work_conn(connection, "invalid NewWorkConn")
                return
            if not check_privilege_key(control.token, message.timestamp,
                                       message.privilege_key):
                self._wrong_key(
                    connection, "work connection with a wrong privilege key",
                    "closing", lambda: self._refuse_work_conn(
                        connection, "invalid NewWorkConn"))
                return
            error, detail = self.freshness_error(message.timestamp,
                                                 message.privilege_key)
            if error is not None:
                self._log.warn("{peer}: work connection for {run_id} "
                               "refused: {error}{detail}",
                               peer=connection.peer, run_id=message.run_id,
                               error=error, detail=detail)
                self._refuse_work_conn(connection, "invalid NewWorkConn")
                return
            self.guard.record_success(source)
            self.replays.remember(message.timestamp, message.privilege_key,
                                  message.run_id)
        connection.authenticated()
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
