"""
The tunnel client as a Twisted service.

A ``ClientService`` keeps the link to the server up, with backoff between
attempts: the link is a yamux session carrying the control stream (``tcp_mux
= true``) or the control TCP connection itself.  After each login every
proxy is registered again, and work connections are opened on demand, as
new yamux streams or new connections through the same endpoint.

The login is not run as ClientService's ``prepareConnection``: a connection
that prepareConnection rejects is left open by ClientService, and its later
loss hits a state with no transition (``NoTransition`` in Waiting).  So the
link counts as connected once TCP (and TLS) is up, a refused login closes
it, and the retry policy grows the delay with consecutive login failures.

With ``admin_port`` set the client also serves its admin API
(:mod:`labrelay.client.admin`; where it listens, and how a reload moves
it, is :mod:`labrelay.client.admin_server`), and
:meth:`RelayClient.reload` (the API's ``/api/reload``, and SIGHUP) applies
the config file's proxy sections again (:mod:`labrelay.client.reload`).
Visitor sections (stcp) listen from the start
(:mod:`labrelay.client.visitor`); a reload leaves them as they are.

Under systemd (``Type=notify``) the client reports READY after its first
successful login, RELOADING/READY around a SIGHUP reload, and STOPPING
(:mod:`labrelay.sdnotify`); failed first logins show in its STATUS.
"""

from typing import Any

import attrs
from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.error import ConnectError, ConnectingCancelledError
from twisted.internet.protocol import Factory
from twisted.logger import Logger

from ..config import ConfigError
from ..errors import LoginRefused
from ..exitcode import exit_after_stop
from ..mux.budget import BufferBudget
from ..program import ProgramService
from ..protocol import messages
from ..tracking import ConnectionSet
from .admin_server import AdminListeners
from .control import ClientControl
from .link import ControlMuxSession
from .reload import reload_from_file
from .visitor import Visitor
from .workconn import ClientWorkConnection, quiet_factory

#: Seconds before a proxy the server refused is registered again (frp: 30).
PROXY_RETRY_SECONDS = 30


@attrs.define
class ProxyState:
    """What the client knows about one of its proxies (as ``frpc status``)."""

    config: Any
    #: new, wait start, running, start error, closed (removed by a reload)
    status: str = "new"
    error: str = ""
    remote_addr: str = ""
    retry_call: Any = None


class RelayClient(ProgramService):
    """
    :param config: a :class:`labrelay.config.ClientConfig`.
    :param endpoint: the client endpoint to the server (TLS included).
    :param config_path: the config file that :meth:`reload` and the admin
        API's ``/api/config`` read (None: no file; no SIGHUP handler).
    :param admin_listen: an endpoint description overriding
        admin_addr/admin_port (tests listen on port 0); the admin API runs
        when admin_port > 0 or this is given.
    :param notifier: a :class:`labrelay.sdnotify.Notifier` (default: for
        ``$NOTIFY_SOCKET``, which does nothing when it is unset).
    """

    _log = Logger()

    def __init__(
        self,
        config,
        reactor,
        endpoint,
        exit_on_fatal=True,
        config_path=None,
        admin_listen=None,
        notifier=None,
    ):
        super().__init__(config, reactor, config_path, notifier)
        self._endpoint = endpoint
        self._exit_on_fatal = exit_on_fatal
        self.run_id = ""
        self.control = None
        self._session = None
        self.buffer_budget = BufferBudget(config.max_buffered_bytes)
        self.proxies = {p.name: ProxyState(p) for p in config.proxies}
        self.visitors = [Visitor(self, v) for v in config.visitors]
        self.logins = 0
        self._status_waiters = []  # (name, statuses, Deferred)
        self.login_errors = []
        self.fatal_error = None
        #: fires with the control after the first successful login, or
        #: fails with the first login's error
        self.first_login = Deferred()
        self._login_failures = 0
        self.connections = ConnectionSet()  # work and local connections
        self._dialing = set()  # work connections being dialled (no mux)
        self.udp_links = {}  # udp proxy name -> its UdpWorkLink
        if config.tcp_mux:
            factory = Factory.forProtocol(self._new_session)
        else:
            factory = Factory.forProtocol(self._new_control)
        factory.noisy = False  # no "Starting factory" line per attempt
        self._backoff = backoffPolicy(initialDelay=1.0, maxDelay=20.0)
        self._link = ClientService(
            endpoint, factory, retryPolicy=self._retry_delay, clock=reactor
        )
        self._link.setServiceParent(self)
        #: the admin API, started, moved and stopped by reloads
        self.admin_listeners = AdminListeners(self, reactor, admin_listen)

    @property
    def admin(self):
        """The admin API's current :class:`AdminServer`, or None."""
        return self.admin_listeners.current

    @property
    def server_address(self) -> str:
        """``host:port`` of the server, as log lines name it."""
        host = self.config.server_addr
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"{host}:{self.config.server_port}"

    def _retry_delay(self, attempts: int) -> float:
        """ClientService's retry policy: the backoff delay, counting refused
        logins too (a connection that succeeds but whose login is refused
        resets ClientService's own count), with one log line saying so."""
        attempt = max(attempts, self._login_failures)
        delay = self._backoff(attempt)
        self._log.info(
            "connecting to server {server} again in {delay}s (attempt {attempt})",
            server=self.server_address,
            delay=round(delay, 1),
            attempt=attempt + 1,
        )
        return delay

    def _new_session(self):
        return ControlMuxSession(
            self,
            clock=self.clock,
            keepalive_interval=self.config.tcp_mux_keepalive_interval,
            budget=self.buffer_budget,
        )

    def _new_control(self):
        control = ClientControl(self)
        self._start_login(control)
        return control

    def startService(self):
        super().startService()
        first = self._link.whenConnected(failAfterFailures=1)
        first.addErrback(self._first_login_failed)
        self.reload_on_sighup()
        for visitor in self.visitors:
            visitor.start()

    def stopService(self):
        self.begin_stopping()
        admin_closed = self.admin_listeners.close()
        for state in self.proxies.values():
            if state.retry_call is not None and state.retry_call.active():
                state.retry_call.cancel()
            state.retry_call = None
        for dialling in list(self._dialing):
            dialling.cancel()
        for visitor in self.visitors:
            visitor.stop()
        d = super().stopService()
        # ClientService ends the link with transport.loseConnection(), but a
        # TLS transport does not start its shutdown while a producer is
        # registered on it, and the yamux session is one: without closing
        # the session (which unregisters first) the link never ends.
        if self._session is not None:
            self._session.close()
        d.addCallback(lambda _: self.connections.close_all())
        d.addCallback(lambda _: admin_closed)
        return d

    def when_admin_listening(self):
        """A Deferred firing with the admin API's IListeningPort."""
        return self.admin_listeners.when_listening()

    def when_admin_settled(self) -> Deferred:
        """A Deferred firing once the last reload's admin changes are done
        (the new listener listening, the old one closed)."""
        return self.admin_listeners.when_settled()

    def apply_admin(self, new) -> Deferred:
        """A reload's admin settings (*new* a ClientConfig): see
        :class:`~labrelay.client.admin_server.AdminListeners`."""
        return self.admin_listeners.apply(new)

    def stop_gracefully(self, exit_code: int = 0) -> None:
        """Stop (``POST /api/stop``): the whole process under twistd, which
        then exits with *exit_code*; only this service otherwise."""
        if self._exit_on_fatal:
            if exit_code:
                exit_after_stop(self.reactor, exit_code)
            elif self.reactor.running:
                self.reactor.stop()
        elif self.running:
            self.stopService()

    # Reload.

    def reload(self):
        """
        Re-read :attr:`config_path` and apply its proxy sections; a
        :class:`labrelay.client.reload.ReloadResult`.  Raises ConfigError,
        changing nothing, for a bad file (or when there is no file).
        """
        if not self.config_path:
            raise ConfigError("labrelay-client has no config file path")
        return reload_from_file(self, self.config_path)

    def _reload_from_signal(self) -> None:
        self._log.info("SIGHUP: reloading {path}", path=self.config_path)
        # Only once READY was sent: systemd ends a reload at the next READY.
        notify = self.logins > 0
        if notify:
            self.notifier.reloading("reloading proxies")
        status = "reloaded"
        try:
            self.reload()
        except ConfigError as e:
            self._log.error("reload: {error}; nothing changed", error=e)
            status = f"reload failed, nothing changed: {e}"
        except Exception:
            self._log.failure("reload failed")
            status = "reload failed"
        if notify:
            self.notifier.ready(status)

    def _first_login_failed(self, failure):
        error = failure.value
        if isinstance(error, ConnectError):
            error = f"cannot connect to {self.server_address}: " + " ".join(
                str(error).split()
            )
        if not self.first_login.called:
            self.first_login.errback(error)
            self.first_login.addErrback(lambda f: None)
        if self.config.login_fail_exit:
            self._log.error(
                "login to server failed: {error}; exiting because "
                "login_fail_exit = true (set it to false to keep retrying)",
                error=error,
            )
            if self._exit_on_fatal:
                exit_after_stop(self.reactor, 1)
            else:
                self.fatal_error = error
        else:
            self._log.warn("login to server failed: {error}; retrying", error=error)
            self.notifier.status(f"login to server failed: {error}; retrying")

    # Link and login.

    def _start_login(self, control):
        self.control = control
        control.logged_in.addCallbacks(self._logged_in, self._login_failed)

    def _login_failed(self, failure):
        self._login_failures += 1
        if self.logins == 0:
            self._first_login_failed(failure)
        else:
            self._log.warn(
                "login to server failed: {error}; retrying", error=failure.value
            )
        self.login_errors.append(failure.value)

    def _logged_in(self, control):
        first = not self.run_id
        self.run_id = control.run_id
        self.logins += 1
        self._login_failures = 0
        if self.logins == 1:  # the first success, even after failures
            self.notifier.ready(
                f"logged in to {self.config.server_addr}:"
                f"{self.config.server_port}, run_id {self.run_id}"
            )
        if not self.first_login.called:
            self.first_login.callback(control)
        self._log.info(
            "login to server success, run_id {run_id}; "
            "registering {count} proxies: {names}",
            run_id=self.run_id,
            count=len(self.proxies),
            names=", ".join(self.proxies) or "none",
        )
        if first and not self.proxies and not self.visitors:
            self._log.warn("no proxies configured")
        for state in self.proxies.values():
            self._register(state)
        return control

    def control_lost(self, control, reason):
        if self.control is control:
            self.control = None
            for state in self.proxies.values():
                if state.retry_call is not None and state.retry_call.active():
                    state.retry_call.cancel()
                state.retry_call = None
                if state.status != "start error":
                    self._set_status(state, "wait start")
            session, self._session = self._session, None
            if session is not None:
                session.close()
            if control.login_ok and self.running:
                self._log.warn("connection to server lost; reconnecting")

    # Proxies.

    def when_proxy_status(self, name, *statuses):
        """A Deferred firing with the ProxyState once proxy *name* is in one
        of *statuses* (now or later)."""
        state = self.proxies[name]
        if state.status in statuses:
            return succeed(state)
        d = Deferred()
        self._status_waiters.append((name, statuses, d))
        return d

    def _set_status(self, state, status) -> None:
        state.status = status
        waiting, self._status_waiters = self._status_waiters, []
        for entry in waiting:
            name, statuses, d = entry
            if name == state.config.name and status in statuses:
                d.callback(state)
            else:
                self._status_waiters.append(entry)

    def add_proxy(self, config) -> None:
        """Start proxy *config* (a reload): register it if logged in, else
        at the next login."""
        state = ProxyState(config)
        self.proxies[config.name] = state
        control = self.control
        if control is not None and control.login_ok:
            self._register(state)

    def remove_proxy(self, name) -> None:
        """Close proxy *name* (a reload): CloseProxy if logged in, and forget
        it; its user connections already relayed are left alone."""
        state = self.proxies.pop(name, None)
        if state is None:
            return
        if state.retry_call is not None and state.retry_call.active():
            state.retry_call.cancel()
        state.retry_call = None
        control = self.control
        if control is not None and control.login_ok:
            control.send(messages.CloseProxy(proxy_name=name))
        self._log.info("[{name}] proxy closed", name=name)
        self._set_status(state, "closed")

    def proxy_config(self, name):
        state = self.proxies.get(name)
        return state.config if state is not None else None

    def _register(self, state) -> None:
        state.retry_call = None
        control = self.control
        if control is None:
            return
        p = state.config
        self._set_status(state, "wait start")
        control.send(
            messages.NewProxy(
                proxy_name=p.name,
                proxy_type=p.type,
                use_encryption=p.use_encryption,
                use_compression=p.use_compression,
                metas=dict(p.metas) or None,
                remote_port=p.remote_port,
                custom_domains=list(p.custom_domains) or None,
                subdomain=p.subdomain,
                locations=list(p.locations) or None,
                http_user=p.http_user,
                http_pwd=p.http_pwd,
                host_header_rewrite=p.host_header_rewrite,
                headers=dict(p.headers) or None,
                route_by_http_user=p.route_by_http_user,
                sk=p.sk,
                allow_users=list(p.allow_users) or None,
                multiplexer=p.multiplexer,
            )
        )

    def proxy_response(self, message) -> None:
        state = self.proxies.get(message.proxy_name)
        if state is None:
            return
        if message.error:
            state.error = message.error
            state.remote_addr = ""
            self._log.warn(
                "[{name}] start error: {error}; retrying in {seconds}s",
                name=message.proxy_name,
                error=message.error,
                seconds=PROXY_RETRY_SECONDS,
            )
            state.retry_call = self.clock.callLater(
                PROXY_RETRY_SECONDS, self._register, state
            )
            # Last: a waiter may stop the service from here, and stopService
            # must find the retry to cancel it.
            self._set_status(state, "start error")
            return
        state.error = ""
        state.remote_addr = message.remote_addr
        self._set_status(state, "running")
        self._log.info(
            "[{name}] start proxy success, remote address {remote_addr}",
            name=message.proxy_name,
            remote_addr=message.remote_addr,
        )

    # Work connections.

    def open_work_connection(self) -> None:
        self.open_frp_connection(ClientWorkConnection(self), "work connection")

    def open_frp_connection(self, protocol, what: str, on_failure=None) -> None:
        """Open a new connection to the server for *protocol* (a work or
        visitor connection): a yamux stream under tcp_mux, else a new
        connection through the server endpoint; *on_failure* is called if
        it cannot be opened."""
        if not self.running:
            if on_failure is not None:
                on_failure()
            return
        if self._session is not None:
            try:
                self._session.open_stream(protocol)
            except Exception as e:
                self._log.warn(
                    "cannot open a {what} stream: {error}", what=what, error=e
                )
                if on_failure is not None:
                    on_failure()
            return
        d = self._endpoint.connect(quiet_factory(lambda: protocol))
        # A dial still in progress when the service stops is cancelled there.
        self._dialing.add(d)

        def dialled(result):
            self._dialing.discard(d)
            return result

        def failed(failure):
            if on_failure is not None:
                on_failure()
            if not failure.check(CancelledError, ConnectingCancelledError):
                self._log.warn(
                    "cannot open a {what}: {error}",
                    what=what,
                    error=failure.getErrorMessage(),
                )

        d.addBoth(dialled)
        d.addErrback(failed)


__all__ = ["RelayClient", "ProxyState", "LoginRefused"]
