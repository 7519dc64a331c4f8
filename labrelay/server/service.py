"""
The relay server as a Twisted service: the bind-port listener and the
decisions that span clients (login, run_id replacement, work-connection
routing, which proxy type serves a NewProxy).

Each accepted connection is first admitted (the flood caps and the
``unauthenticated_timeout`` deadline of ``labrelay.server.guard``), sniffed
for TLS (``labrelay.sniff``), then becomes a yamux session whose streams
are frp connections (``tcp_mux = true``) or is itself one frp connection.

A yamux session that has authenticated (a stream logged in or joined a
pool) is closed once it has carried no control or work connection for
``session_idle_timeout`` seconds; streams that never identify themselves do
not count, nor do Pings.  A real frpc's session carries its control stream
for its whole life, so it is never idle.  A session without a control
stream whose streams join the pool of a client (a *work-only* session; frpc
never opens one) serves that one client, and a client has at most
``max_sessions_per_client`` of them: beyond that a NewWorkConn is refused
and its session closed.  (Without tcp_mux every work connection is its own
TCP connection: an idle one waits in its client's pool, whose size is
capped, and a spliced one ends with its user.)

Authentication of a first message, in order: the privilege key, through
the password throttle (``labrelay.throttle``: a source in backoff is
answered late, right key or not, and one with too many attempts waiting is
refused unchecked); then ``auth_timestamp_skew`` (when on), the replay
cache (which also refuses a Login reusing another message type's proof)
and, for a Login naming a live run_id, that the run_id belongs to the same
``user`` (no takeover across users), and the login limits
(``max_logins_per_connection``, ``max_clients_per_user``,
``max_clients_per_source``; a client replacing itself is not counted
twice).  A NewWorkConn only ever joins the pool of the control its run_id
names, only from that control's yamux session (tcp_mux) or address
(:meth:`RelayServer.work_conn_binding_error`), and is authenticated with
the settings that control logged in with.

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
from zope.interface import implementer

from ..listeners import StartupListener
from ..logs import install_log_observer, set_log_level

from .. import FRP_VERSION, VERSION_TEXT
from ..config import ConfigError
from ..endpoints import server_endpoint_description
from ..errors import ProxyError
from ..interfaces import IAdmissionHolder
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
from .budget import RegistrationBudget
from .control import ControlSession, carrier_of
from .guard import LOGIN, RateLimitedLog, ReplayCache, SourceGuard
from ..throttle import FAIL, PASS, REFUSED, PasswordThrottle
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


def _mux_session(connection):
    """The yamux session *connection* is a stream of, or None."""
    return getattr(connection.transport, "_session", None)


@implementer(IAdmissionHolder)
class ServerSession(YamuxSession):
    """The server's yamux session; refuses plain frp clients clearly."""

    _log = Logger()
    _first = True
    #: counts this session as unauthenticated until a stream logs in
    admission = None
    #: a stream of this session logged in (it carries a control)
    logged_in = False
    #: the run_id whose pool this session's streams join, if it carries no
    #: control (a work-only session; see the module docstring)
    work_for = None

    def __init__(self, server, **kwargs):
        super().__init__(accept_stream=self._frp_stream, **kwargs)
        self._server = server
        self._had_stream = False
        self._working = 0         # streams that logged in or joined a pool
        self._idle_call = None

    def adopt_admission(self, admission) -> None:
        self.admission = admission

    def unauthenticated_timeout(self) -> None:
        """The admission's deadline passed: say why (the sniffer closes
        the connection)."""
        silent = [c for c in getattr(self, "_unidentified", ())
                  if c.alive and c.first_message is None]
        seconds = self.admission.timeout
        if silent:
            why = f"no frp message within {seconds}s on a stream of this " \
                  f"yamux session"
        elif self._had_stream:
            why = (f"no stream of this yamux session logged in or joined a "
                   f"pool within {seconds}s (unauthenticated_timeout)")
        else:
            why = f"yamux session opened no stream within {seconds}s"
        self._server.deadline_passed(describe(self.transport), why)

    # Idle sessions.

    def stream_authenticated(self, login: bool) -> None:
        """A stream logged in (*login*) or joined a pool."""
        self.logged_in = self.logged_in or login
        self._working += 1
        # the session's deadline no longer covers its silent streams
        for connection in getattr(self, "_unidentified", ()):
            connection.start_first_message_timer()
        if self._idle_call is not None:
            self._idle_call.cancel()
            self._idle_call = None

    def stream_ended(self) -> None:
        """A stream that had logged in or joined a pool has ended."""
        self._working -= 1
        timeout = self._server.config.session_idle_timeout
        if (self._working == 0 and timeout > 0 and not self._closed
                and self._idle_call is None):
            self._idle_call = self._server.clock.callLater(
                timeout, self._idle, timeout)

    def _idle(self, timeout) -> None:
        self._idle_call = None
        self._log.info("{peer}: yamux session has carried no control or work"
                       " connection for {seconds}s (session_idle_timeout); "
                       "closing", peer=describe(self.transport),
                       seconds=timeout)
        self.close()

    def session_ended(self) -> None:
        """The session is gone: forget its timer and its client."""
        if self._idle_call is not None:
            self._idle_call.cancel()
            self._idle_call = None
        sessions = self._server.work_sessions.get(self.work_for)
        if sessions is not None:
            sessions.discard(self)
            if not sessions:
                del self._server.work_sessions[self.work_for]

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
        self._had_stream = True
        connection = ServerConnection(self._server, admission=self.admission,
                                      session=self)
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

    noisy = False   # no "Starting factory <... at 0x...>" lines

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

            def closed(_):
                server.sessions.discard(session)
                session.session_ended()

            session.when_closed().addBoth(closed)
            return session
        return ServerConnection(server)


def _address(address) -> str:
    """``host:port`` of a listening address (IPv6 in brackets)."""
    host = address.host
    return f"[{host}]:{address.port}" if ":" in host else \
        f"{host}:{address.port}"


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
        # traffic per proxy (dashboard); both bounded by the live config
        tracked = lambda: self.config.max_tracked_proxies  # noqa: E731
        self.stats = ServerStats(reactor, max_tracked=tracked)
        self.registry = StatsRegistry(reactor, self.stats, tracked)
        self.registration_budget = RegistrationBudget(reactor)
        self.vhost = None
        self.first_message_timeout = FIRST_MESSAGE_TIMEOUT
        self.connections = ConnectionSet()  # frp and user connections
        self.sessions = set()               # yamux sessions (tcp_mux)
        self.work_sessions = {}             # run_id -> work-only sessions
        self.guard = SourceGuard(
            reactor, max_per_source=config.max_unauthenticated_per_source,
            max_total=config.max_unauthenticated_connections,
            timeout=config.unauthenticated_timeout)
        self.replays = ReplayCache(reactor, skew=config.auth_timestamp_skew)
        self.throttle = PasswordThrottle(
            reactor, max_pending=config.auth_pending_per_source,
            failure_budget=config.auth_failures_per_second)
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
        where = ", ".join(f"{name} {_address(port.getHost())}"
                          for name, (_, port) in zip(names, results))
        self._log.info("{version} serving: {where}; token {token}, TLS "
                       "{tls}, tcp_mux {mux}", version=VERSION_TEXT,
                       where=where,
                       token="set" if self.config.token else "EMPTY",
                       tls="only" if self.config.tls_only else "accepted",
                       mux="on" if self.config.tcp_mux else "off")
        self.notifier.ready(f"listening: {status}")

    def when_ready(self):
        """A Deferred firing once every startup listener listens (after
        :meth:`startService`), when READY is sent to systemd."""
        return _observe(self._ready)

    def set_handshake_timeouts(self, seconds: float) -> None:
        """Bound on the first byte, the first message and the time until
        authentication (tests shorten it)."""
        self.first_message_timeout = seconds
        self._sniffer.first_byte_timeout = seconds
        self.guard.timeout = seconds

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
        self.throttle.close()
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
        self.guard.timeout = config.unauthenticated_timeout
        self.replays.skew = config.auth_timestamp_skew
        self.throttle.max_pending = config.auth_pending_per_source
        self.throttle.failure_budget = config.auth_failures_per_second
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

    def _admit(self, address, ended):
        host = getattr(address, "host", "") or ""
        refusal = self.guard.admission_refusal(host)
        if refusal is None:
            evicted = self.guard.make_room()
            if evicted is not None:
                held = self.quiet_log.allow("eviction")
                if held is not None:
                    self._log.warn(
                        "{count} unauthenticated connections (max_"
                        "unauthenticated_connections); closing the oldest "
                        "one from {victim} to admit one from {source} "
                        "({held} more evicted since the last such line)",
                        count=self.guard.unauthenticated + 1, victim=evicted,
                        source=host, held=held)
            return self.guard.admit(host, ended)
        held = self.quiet_log.allow("admission")
        if held is not None:
            self._log.warn("refusing new connections: {why}; closing them at "
                           "once (this one from {source}; {held} more "
                           "refused since the last such line)", why=refusal,
                           source=host, held=held)
        return None

    def deadline_passed(self, peer: str, why: str) -> None:
        """Log that *peer* is closed at its ``unauthenticated_timeout``
        deadline, because *why*: one line per 10 s at most (a flood
        reaches thousands a second), saying how many were held back."""
        held = self.quiet_log.allow("deadline")
        if held is not None:
            more = f" ({held} more such closes since the last line)" \
                if held else ""
            self._log.warn("{peer}: {why}; closing{more}", peer=peer,
                           why=why, more=more)

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

    def log_auth_failure(self, peer: str, problem: str, verdict) -> None:
        """One line per refused password check, at most one per source
        every few seconds (the next says how many were suppressed)."""
        source = verdict.source
        held = self.quiet_log.allow("auth-failure", source)
        if held is None:
            return
        more = (f" ({held} more failures from {source} suppressed)"
                if held else "")
        if verdict.outcome == REFUSED:
            self._log.warn("{peer}: {problem}: refused without checking it, "
                           "too many attempts from {source} waiting for "
                           "their answer{more}", peer=peer, problem=problem,
                           source=source, more=more)
            return
        self._log.warn("{peer}: {problem}; failure {failures} in a row from "
                       "{source}, answered after {delay:g}s{more}",
                       peer=peer, problem=problem, failures=verdict.failures,
                       source=source, delay=verdict.delay, more=more)

    def freshness_error(self, timestamp, key, kind=LOGIN):
        """Why an authenticated message's (timestamp, key) is too old, too
        new or replayed, or None; *kind* is the message's type name.  The
        log-only detail names the run_id that used a replayed pair
        first."""
        error = timestamp_skew_error(timestamp, self.clock.seconds(),
                                     self.config.auth_timestamp_skew)
        if error is None:
            error = self.replays.check(timestamp, key, kind)
            if error is not None:
                return error, (f" (first used by run_id "
                               f"{self.replays.first_run_id(timestamp, key)})")
        return error, ""

    def _check_token(self, connection, who: str, token: str,
                     message) -> Deferred:
        """The throttled check of *message*'s privilege key (see
        labrelay.throttle); nothing more is read from *connection*
        until it is decided."""
        connection.ignore_input()
        return self.throttle.check(
            "token", connection.source, who,
            lambda: check_privilege_key(token, message.timestamp,
                                        message.privilege_key))

    def handle_login(self, connection, login) -> None:
        d = self._check_token(connection, f"user {login.user}",
                              self.config.token, login)
        d.addCallback(self._login_checked, connection, login)
        d.addErrback(lambda f: self._log.failure("checking a login", f))

    def _login_checked(self, verdict, connection, login) -> None:
        problem = f"login refused: wrong token (version={login.version})"
        if verdict.outcome == REFUSED:
            self.log_auth_failure(connection.peer, "login", verdict)
            self._refuse_login(connection, self._error_text(
                f"too many failed logins from {connection.source}; try "
                f"again later", "register control error"))
            return
        if verdict.outcome == FAIL:
            self.log_auth_failure(connection.peer, problem, verdict)
            self._refuse_login(connection, self._error_text(
                "token in login doesn't match token from configuration",
                "register control error"))
            return
        if not connection.alive:
            return
        connection.resume_input()
        error, detail = self.freshness_error(login.timestamp,
                                             login.privilege_key, login.name)
        run_id = login.run_id or new_run_id()
        old = self.registry.controls.get(run_id)
        if error is None and old is not None and not old.closed \
                and old.user != login.user:
            error = (f"run_id [{run_id}] belongs to a client of another "
                     f"user")
            detail = f" (user {old.user!r}, logged in from {old.peer})"
        if error is None:
            error = self._client_limit_error(connection, login, old)
        if error is not None:
            self._log.warn("{peer}: login refused: {error}{detail} "
                           "(user={user!r} run_id={run_id!r})",
                           peer=connection.peer, error=error, detail=detail,
                           user=login.user, run_id=login.run_id)
            self._refuse_login(connection, self._error_text(
                error, "register control error"))
            return
        self.replays.remember(login.timestamp, login.privilege_key, run_id,
                              login.name)
        if old is not None:
            old.close("replaced by a new login with the same run_id")
        connection.authenticated()
        control = ControlSession(self, connection, login, run_id)
        self.registry.add_control(control)
        control.start()

    def _client_limit_error(self, connection, login, old):
        """Why a correct Login would exceed ``max_logins_per_connection``,
        ``max_clients_per_user`` or ``max_clients_per_source``, or None.
        A client replacing itself (*old*, same run_id) is not counted
        twice."""
        config, registry = self.config, self.registry
        replaced = old is not None and not old.closed
        carrier = carrier_of(connection)
        for count, limit, key, what in (
                (registry.clients_on_connection(carrier)
                 - (replaced and old.carrier is carrier),
                 config.max_logins_per_connection,
                 "max_logins_per_connection", "on this connection"),
                (registry.clients_of_user(login.user)
                 - (replaced and old.user == login.user),
                 config.max_clients_per_user, "max_clients_per_user",
                 f"of user [{login.user}]"),
                (registry.clients_from_source(connection.source)
                 - (replaced and old.source == connection.source),
                 config.max_clients_per_source, "max_clients_per_source",
                 f"from {connection.source}")):
            if 0 < limit <= count:
                return (f"too many clients {what}: {count} (the {key} "
                        f"of this server is {limit})")
        return None

    def work_conn_binding_error(self, connection, control):
        """
        Why *connection* may not join *control*'s pool although it names
        its run_id, or None.  A run_id is no secret (it travels in clear in
        every Login and NewWorkConn without TLS), so it alone proves
        nothing.  With tcp_mux frpc opens its work connections as streams
        of its control's own yamux session: a stream of another session is
        someone else.  Without tcp_mux each is a TCP connection from the
        client's host: one from another address is refused unless
        ``work_conn_same_source = false`` (a client whose NAT spreads its
        connections over several public addresses).
        """
        if not self.config.work_conn_same_source:
            return None
        if self.config.tcp_mux:
            session = _mux_session(connection)
            if session is None or session is not _mux_session(
                    control.connection):
                return "not a stream of its client's yamux session"
            return None
        if connection.source != control.source:
            return (f"from {connection.source}, but its client logged in "
                    f"from {control.source} (work_conn_same_source)")
        return None

    def handle_new_work_conn(self, connection, message) -> None:
        control = self.registry.controls.get(message.run_id)
        if control is None or control.closed:
            self._log.warn("{peer}: work connection for unknown run_id "
                           "{run_id!r}; closing", peer=connection.peer,
                           run_id=message.run_id)
            self._refuse_work_conn(
                connection, f"no client with run_id [{message.run_id}]")
            return
        error = self.work_conn_binding_error(connection, control)
        if error is not None:
            held = self.quiet_log.allow("work-binding", connection.source)
            if held is not None:
                self._log.warn("{peer}: work connection for {run_id} "
                               "refused: {error}{more}", peer=connection.peer,
                               run_id=message.run_id, error=error,
                               more=f" ({held} more suppressed)"
                               if held else "")
            self._refuse_work_conn(connection, "invalid NewWorkConn")
            return
        # The settings of the control's login: a reload that changed the
        # token or turned this check on leaves a live client's pool alone.
        if not control.authenticate_new_work_conns:
            if self._admit_work_session(connection, control):
                connection.authenticated()
                control.accept_work_conn(connection)
            return
        d = self._check_token(connection, f"run_id {message.run_id}",
                              control.token, message)
        d.addCallback(self._work_conn_checked, connection, message, control)
        d.addErrback(lambda f: self._log.failure(
            "checking a work connection", f))

    def _work_conn_checked(self, verdict, connection, message,
                           control) -> None:
        if verdict.outcome != PASS:
            self.log_auth_failure(
                connection.peer, "work connection with a wrong privilege key"
                if verdict.outcome == FAIL else "work connection", verdict)
            self._refuse_work_conn(connection, "invalid NewWorkConn")
            return
        if not connection.alive:
            return
        error, detail = self.freshness_error(message.timestamp,
                                             message.privilege_key,
                                             message.name)
        if error is None and control.closed:
            error = "its client has gone"
        if error is not None:
            self._log.warn("{peer}: work connection for {run_id} "
                           "refused: {error}{detail}",
                           peer=connection.peer, run_id=message.run_id,
                           error=error, detail=detail)
            self._refuse_work_conn(connection, "invalid NewWorkConn")
            return
        self.replays.remember(message.timestamp, message.privilege_key,
                              message.run_id, message.name)
        connection.resume_input()
        if not self._admit_work_session(connection, control):
            return
        connection.authenticated()
        control.accept_work_conn(connection)

    def _admit_work_session(self, connection, control) -> bool:
        """
        A work connection that is a stream of a session without a control
        binds that session to its client, within the client's
        ``max_sessions_per_client``; beyond it (or for a second client)
        the work connection is refused and its session closed.
        """
        session = connection.session
        if session is None or session.logged_in \
                or session.work_for == control.run_id:
            return True
        cap = self.config.max_sessions_per_client
        sessions = self.work_sessions.get(control.run_id, ())
        if session.work_for is not None:
            why = f"the session already serves run_id {session.work_for}"
        elif cap > 0 and len(sessions) >= cap:
            why = (f"{len(sessions)} sessions without a control already "
                   f"serve this client (max_sessions_per_client = {cap})")
        else:
            session.work_for = control.run_id
            self.work_sessions.setdefault(control.run_id, set()).add(session)
            return True
        held = self.quiet_log.allow("work sessions")
        if held is not None:
            self._log.warn("{peer}: work connection for {run_id} refused "
                           "and its yamux session closed: {why} ({held} more"
                           " since the last such line)", peer=connection.peer,
                           run_id=control.run_id, why=why, held=held)
        self._refuse_work_conn(connection, "too many sessions for this "
                               "client")
        session.close()
        return False

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
