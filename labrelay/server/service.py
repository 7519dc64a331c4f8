"""
The relay server as a Twisted service: it builds the server's shared
records and policies into one :class:`~labrelay.server.context.ServerContext`,
wires the listeners (the bind port, :mod:`labrelay.server.bind_port`; the
HTTP vhost; the dashboard), says which proxy type serves a NewProxy, and
applies a reload.

Who may log in or join a pool is :mod:`labrelay.server.auth`'s decision,
acted on by :mod:`labrelay.server.connection`; which remote port a proxy
gets is :mod:`labrelay.server.ports`'s.

Run from a config file, the server reloads it on SIGHUP (:meth:`reload`,
:mod:`labrelay.server.reload`), and under systemd (``Type=notify``) it
reports READY once every startup listener listens, RELOADING/READY around a
reload and STOPPING (:mod:`labrelay.sdnotify`).
"""

from twisted.internet.defer import Deferred, DeferredList
from twisted.logger import Logger
from twisted.python.failure import Failure

from .. import VERSION_TEXT
from ..config import ConfigError
from ..endpoints import server_endpoint_description
from ..errors import ProxyError
from ..listeners import StartupListener
from ..logs import set_log_level
from ..mux.budget import BufferBudget
from ..program import ProgramService
from ..sniff import SniffingFactory
from ..throttle import PasswordThrottle
from ..tracking import ConnectionSet
from .auth import Authenticator, new_run_id
from .bind_port import FrpConnectionFactory, admitter
from .budget import RegistrationBudget
from .connection import FIRST_MESSAGE_TIMEOUT
from .context import ServerContext
from .guard import RateLimitedLog, ReplayCache, SourceGuard
from .ports import PortAllocator
from .refusals import RefusalLog
from .reload import reload_from_file
from .stats import ServerStats, StatsRegistry
from .stcp_proxy import StcpProxy
from .tcp_proxy import TcpProxy
from .udp_proxy import UdpProxy

__all__ = ["RelayServer", "new_run_id"]


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


def _address(address) -> str:
    """``host:port`` of a listening address (IPv6 in brackets)."""
    host = address.host
    return f"[{host}]:{address.port}" if ":" in host else f"{host}:{address.port}"


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


class RelayServer(ProgramService):
    """
    :param config: a :class:`labrelay.config.ServerConfig`.
    :param tls_options: server TLS options (``labrelay.tls``).
    :param listen: an endpoint description overriding bind_addr/bind_port
        (tests listen on port 0).
    :param vhost_listen: likewise for proxy_bind_addr/vhost_http_port; the
        HTTP vhost runs when vhost_http_port > 0 or this is given.
    :param https_listen: likewise for vhost_https_port (the HTTPS vhost,
        :mod:`labrelay.server.https_proxy`).
    :param tcpmux_listen: likewise for tcpmux_httpconnect_port
        (:mod:`labrelay.server.tcpmux`).
    :param dashboard_listen: likewise for dashboard_addr/dashboard_port;
        the dashboard runs when dashboard_port > 0 or this is given.
    :param config_path: the config file that :meth:`reload` (and SIGHUP)
        reads again (None: no file, no SIGHUP handler).
    :param notifier: a :class:`labrelay.sdnotify.Notifier` (default: for
        ``$NOTIFY_SOCKET``, which does nothing when it is unset).
    """

    _log = Logger()

    def __init__(
        self,
        config,
        reactor,
        tls_options,
        listen=None,
        vhost_listen=None,
        dashboard_listen=None,
        config_path=None,
        https_listen=None,
        tcpmux_listen=None,
        notifier=None,
    ):
        super().__init__(config, reactor, config_path, notifier)
        self._ready = None  # fires once every listener listens
        self.vhost = None
        self.first_message_timeout = FIRST_MESSAGE_TIMEOUT
        self._build_context(config, reactor)
        self._sniffer = factory = SniffingFactory(
            FrpConnectionFactory(self.context),
            tls_options,
            tls_only=config.tls_only,
            clock=reactor,
            first_byte_timeout=FIRST_MESSAGE_TIMEOUT,
            admit=admitter(self.guard, self.refusals),
        )
        description = listen or server_endpoint_description(
            config.bind_addr, config.bind_port
        )
        self._listener = StartupListener(
            reactor, description, factory, program="labrelay-server"
        )
        self._listener.setServiceParent(self)
        self._vhost_listener = None
        if config.vhost_http_port > 0 or vhost_listen:
            self._start_vhost(vhost_listen)
        self._named_ports = {}  # proxy type -> (NamedPort, its listener)
        if config.vhost_https_port > 0 or https_listen:
            from .https_proxy import HttpsVhost

            self._start_named_port(
                "https", HttpsVhost(self.context), https_listen, "vhost https port"
            )
        if config.tcpmux_httpconnect_port > 0 or tcpmux_listen:
            from .tcpmux import TcpMuxPort

            self._start_named_port(
                "tcpmux", TcpMuxPort(self.context), tcpmux_listen, "tcpmux port"
            )
        self.dashboard = None
        if config.dashboard_port > 0 or dashboard_listen:
            from .dashboard import DashboardService  # twisted.web: only if on

            self.dashboard = DashboardService(self.context, dashboard_listen)
            self.dashboard.setServiceParent(self)

    def _build_context(self, config, reactor) -> None:
        """The server-wide records and policies, and the
        :class:`ServerContext` that hands them to the pieces."""
        live_config = lambda: self.config  # noqa: E731 (a reload replaces it)
        tracked = lambda: self.config.max_tracked_proxies  # noqa: E731
        # traffic per proxy (dashboard) and remembered ports, both bounded
        # by the live config
        self.stats = ServerStats(reactor, max_tracked=tracked)
        self.registry = StatsRegistry(self.stats)
        self.ports = PortAllocator(
            reactor, lambda: self.config.allow_ports, max_remembered=tracked
        )
        self.udp_ports = PortAllocator(
            reactor, lambda: self.config.allow_ports, max_remembered=tracked
        )
        self.registration_budget = RegistrationBudget(reactor)
        self.connections = ConnectionSet()  # frp and user connections
        self.sessions = set()  # yamux sessions (tcp_mux)
        self.guard = SourceGuard(
            reactor,
            max_per_source=config.max_unauthenticated_per_source,
            max_total=config.max_unauthenticated_connections,
            timeout=config.unauthenticated_timeout,
        )
        self.replays = ReplayCache(reactor, skew=config.auth_timestamp_skew)
        self.throttle = PasswordThrottle(
            reactor,
            max_pending=config.auth_pending_per_source,
            failure_budget=config.auth_failures_per_second,
        )
        self.buffer_budget = BufferBudget(config.max_buffered_bytes)
        self.quiet_log = RateLimitedLog(reactor)
        self.refusals = RefusalLog(self.quiet_log)
        # new_run_id is looked up at each login (tests patch it here)
        self.authenticator = Authenticator(
            reactor,
            live_config,
            self.registry,
            self.throttle,
            self.replays,
            new_run_id=lambda: new_run_id(),
        )
        self.context = ServerContext(
            reactor=reactor,
            clock=reactor,
            get_config=live_config,
            registry=self.registry,
            ports=self.ports,
            udp_ports=self.udp_ports,
            stats=self.stats,
            guard=self.guard,
            authenticator=self.authenticator,
            throttle=self.throttle,
            refusals=self.refusals,
            registration_budget=self.registration_budget,
            buffer_budget=self.buffer_budget,
            connections=self.connections,
            sessions=self.sessions,
            first_message_timeout=lambda: self.first_message_timeout,
            create_proxy=self.create_proxy,
        )

    def _start_vhost(self, description) -> None:
        """The HTTP vhost and its listener, a start-up listener like the
        bind port (a bind failure fails start-up)."""
        from .vhost import Vhost  # h11 and the vhost: only when it is on

        config = self.config
        self.vhost = Vhost(self.context)
        description = description or server_endpoint_description(
            config.proxy_bind_addr, config.vhost_http_port
        )
        listener = _VhostListener(
            self.reactor, description, self.vhost.factory, program="labrelay-server"
        )
        listener.vhost = self.vhost
        listener.setServiceParent(self)
        self._vhost_listener = listener

    def _start_named_port(self, kind, port, description, name) -> None:
        """A port routing by name (HTTPS vhost, tcpmux) and its start-up
        listener."""
        description = description or server_endpoint_description(
            self.config.proxy_bind_addr, port.port
        )
        listener = _VhostListener(
            self.reactor, description, port.factory, program="labrelay-server"
        )
        listener.vhost = port
        listener.setServiceParent(self)
        listener.port_name = name
        self._named_ports[kind] = (port, listener)

    def named_port(self, kind):
        """The HTTPS vhost (``"https"``) or the tcpmux port (``"tcpmux"``),
        or None when it is off."""
        entry = self._named_ports.get(kind)
        return entry[0] if entry else None

    def when_named_port_listening(self, kind):
        """A Deferred firing with that port's IListeningPort."""
        return self._named_ports[kind][1].when_listening()

    def startService(self):
        # Before READY can go out: systemd may send SIGHUP right after it.
        self.reload_on_sighup()
        super().startService()
        listeners = [("bind port", self.when_listening())]
        if self._vhost_listener is not None:
            listeners.append(("vhost port", self.when_vhost_listening()))
        for _, listener in self._named_ports.values():
            listeners.append((listener.port_name, listener.when_listening()))
        if self.dashboard is not None:
            listeners.append(("dashboard", self.when_dashboard_listening()))
        names = [name for name, _ in listeners]
        self._ready = DeferredList(
            [_observe(d) for _, d in listeners],
            fireOnOneErrback=True,
            consumeErrors=True,
        )
        self._ready.addCallback(self._listening, names)
        self._ready.addErrback(lambda failure: None)  # start-up fails anyway

    def _listening(self, results, names) -> None:
        status = ", ".join(
            f"{name} {port.getHost().port}" for name, (_, port) in zip(names, results)
        )
        where = ", ".join(
            f"{name} {_address(port.getHost())}"
            for name, (_, port) in zip(names, results)
        )
        self._log.info(
            "{version} serving: {where}; token {token}, TLS {tls}, tcp_mux {mux}",
            version=VERSION_TEXT,
            where=where,
            token="set" if self.config.token else "EMPTY",
            tls="only" if self.config.tls_only else "accepted",
            mux="on" if self.config.tcp_mux else "off",
        )
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

    def stopService(self):
        self.begin_stopping()
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
            status += f"; waiting for a restart: {', '.join(result.restart_keys)}"
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
            self.dashboard.set_credentials(config.dashboard_user, config.dashboard_pwd)
        if (
            not set_log_level(self.log_observer, config.log_level)
            and config.log_level != old_level
        ):
            self._log.warn(
                "reload: log_level = {level} is not applied: the "
                "log destination was chosen on twistd's command "
                "line, not by log_file",
                level=config.log_level,
            )

    def _reload_from_signal(self) -> None:
        self._log.info("SIGHUP: reloading {path}", path=self.config_path)
        try:
            self.reload()
        except ConfigError:
            pass  # logged by reload()
        except Exception:
            self._log.failure("reload failed")

    def log_auth_failure(self, peer: str, problem: str, verdict) -> None:
        """One line per refused password check, at most one per source
        every few seconds (:meth:`RefusalLog.auth_failure
        <labrelay.server.refusals.RefusalLog.auth_failure>`)."""
        self.refusals.auth_failure(peer, problem, verdict)

    # Proxy types.

    def create_proxy(self, control, message):
        kind = message.proxy_type or "tcp"
        if kind == "tcp":
            return TcpProxy(self.context, control, message)
        if kind == "udp":
            return UdpProxy(self.context, control, message)
        if kind == "http":
            if self.vhost is None:
                raise ProxyError("type [http] needs vhost_http_port set on the server")
            return self.vhost.create_proxy(control, message)
        if kind == "stcp":
            return StcpProxy(self.context, control, message)
        if kind in ("https", "tcpmux"):
            port = self.named_port(kind)
            if port is None:
                raise ProxyError(
                    "type [https] not supported when vhost https port is not set"
                    if kind == "https"
                    else "tcpmux with multiplexer httpconnect not supported "
                    "because this feature is not enabled in server"
                )
            return port.create_proxy(control, message)
        raise ProxyError(f"proxy type [{kind}] is not supported by labrelay yet")
