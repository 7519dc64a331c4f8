"""
The tunnel client as a Twisted service.

A ``ClientService`` keeps the link to the server up, with backoff between
attempts: the link is a yamux session carrying the control stream (``tcp_mux
= true``) or the control TCP connection itself.  After each login every
proxy is registered again, and work connections are opened on demand, as
new yamux streams or new connections through the same endpoint.
"""

import attr
from twisted.application import service
from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet.protocol import Factory
from twisted.logger import Logger

from ..errors import LoginRefused
from ..exitcode import exit_after_stop
from ..protocol import messages
from .control import ClientControl
from .workconn import ClientWorkConnection

#: Seconds before a proxy the server refused is registered again (frp: 30).
PROXY_RETRY_SECONDS = 30


@attr.s
class ProxyState:
    """What the client knows about one of its proxies (as ``frpc status``)."""

    config = attr.ib()
    status = attr.ib(default="new")   # new, wait start, running, start error
    error = attr.ib(default="")
    remote_addr = attr.ib(default="")
    retry_call = attr.ib(default=None)


class RelayClient(service.MultiService):
    """
    :param config: a :class:`labrelay.config.ClientConfig`.
    :param endpoint: the client endpoint to the server (TLS included).
    """

    _log = Logger()

    def __init__(self, config, reactor, endpoint, exit_on_fatal=True):
        super().__init__()
        self.config = config
        self.reactor = reactor
        self.clock = reactor
        self._endpoint = endpoint
        self._exit_on_fatal = exit_on_fatal
        self.run_id = ""
        self.control = None
        self._session = None
        self.proxies = {p.name: ProxyState(p) for p in config.proxies}
        self.logins = 0
        if config.tcp_mux:
            factory = Factory.forProtocol(self._new_session)
        else:
            factory = Factory.forProtocol(lambda: ClientControl(self))
        self._link = ClientService(
            endpoint, factory,
            retryPolicy=backoffPolicy(initialDelay=1.0, maxDelay=20.0),
            clock=reactor, prepareConnection=self._prepare)
        self._link.setServiceParent(self)

    def _new_session(self):
        from ..mux.session import YamuxSession
        return YamuxSession(
            is_client=True, clock=self.clock,
            keepalive_interval=self.config.tcp_mux_keepalive_interval)

    def startService(self):
        super().startService()
        first = self._link.whenConnected(failAfterFailures=1)
        first.addErrback(self._first_login_failed)

    def stopService(self):
        for state in self.proxies.values():
            if state.retry_call is not None and state.retry_call.active():
                state.retry_call.cancel()
            state.retry_call = None
        return super().stopService()

    def _first_login_failed(self, failure):
        error = failure.value
        if self.config.login_fail_exit:
            self._log.error(
                "login to server failed: {error}; exiting because "
                "login_fail_exit = true (set it to false to keep retrying)",
                error=error)
            if self._exit_on_fatal:
                exit_after_stop(self.reactor, 1)
            else:
                self.fatal_error = error
        else:
            self._log.warn("login to server failed: {error}; retrying",
                           error=error)

    def whenLoggedIn(self):
        """A Deferred that fires once connected and logged in."""
        return self._link.whenConnected()

    # Link and login.

    def _prepare(self, link):
        if self.config.tcp_mux:
            self._session = link
            control = ClientControl(self)
            link.open_stream(control)
        else:
            control = link
        self.control = control
        d = control.logged_in
        d.addCallback(self._logged_in)
        return d

    def _logged_in(self, control):
        first = not self.run_id
        self.run_id = control.run_id
        self.logins += 1
        self._log.info("login to server success, run_id {run_id}",
                       run_id=self.run_id)
        if first and not self.proxies:
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
                    state.status = "wait start"
            if self._session is not None:
                self._session.close()
                self._session = None
            if control.logged_in.called and self.running:
                self._log.warn("connection to server lost; reconnecting")

    # Proxies.

    def proxy_config(self, name):
        state = self.proxies.get(name)
        return state.config if state is not None else None

    def _register(self, state) -> None:
        state.retry_call = None
        control = self.control
        if control is None:
            return
        p = state.config
        state.status = "wait start"
        control.send(messages.NewProxy(
            proxy_name=p.name, proxy_type=p.type,
            use_encryption=p.use_encryption, use_compression=p.use_compression,
            metas=dict(p.metas) or None, remote_port=p.remote_port,
            custom_domains=list(p.custom_domains) or None,
            subdomain=p.subdomain, locations=list(p.locations) or None,
            http_user=p.http_user, http_pwd=p.http_pwd,
            host_header_rewrite=p.host_header_rewrite,
            headers=dict(p.headers) or None,
            route_by_http_user=p.route_by_http_user))

    def proxy_response(self, message) -> None:
        state = self.proxies.get(message.proxy_name)
        if state is None:
            return
        if message.error:
            state.status = "start error"
            state.error = message.error
            state.remote_addr = ""
            self._log.warn("[{name}] start error: {error}; retrying in "
                           "{seconds}s", name=message.proxy_name,
                           error=message.error, seconds=PROXY_RETRY_SECONDS)
            state.retry_call = self.clock.callLater(
                PROXY_RETRY_SECONDS, self._register, state)
            return
        state.status = "running"
        state.error = ""
        state.remote_addr = message.remote_addr
        self._log.info("[{name}] start proxy success, remote address "
                       "{remote_addr}", name=message.proxy_name,
                       remote_addr=message.remote_addr)

    # Work connections.

    def open_work_connection(self) -> None:
        protocol = ClientWorkConnection(self)
        if self._session is not None:
            try:
                self._session.open_stream(protocol)
            except Exception as e:
                self._log.warn("cannot open a work stream: {error}", error=e)
            return
        d = self._endpoint.connect(Factory.forProtocol(lambda: protocol))
        d.addErrback(lambda f: self._log.warn(
            "cannot open a work connection: {error}",
            error=f.getErrorMessage()))


__all__ = ["RelayClient", "ProxyState", "LoginRefused"]
