"""
The server side of one client: its control connection after Login.

A :class:`ControlSession` owns the client's proxies and its pool of work
connections.  It answers NewProxy, CloseProxy and Ping, asks for work
connections, enforces the heartbeat timeout, and when its connection goes
away (or a reconnect with the same run_id replaces it) it closes every
proxy at once, so the client's ports are free again.

Limits: at most ``max_proxies_per_client`` proxies (and the server holds
at most ``max_proxies_total`` in all); a pool of at most
``min(pool_count, max_pool_count) + 10`` idle work connections (frp clamps
the client's pool_count the same way), so a client cannot make the server
hold more by claiming a huge pool_count.  A CloseProxy only ever closes a
proxy of this control.  With ``authenticate_heartbeats`` a Ping's key must
be right, fresh (``auth_timestamp_skew``) and not replayed from another
client or from long ago (:meth:`Authenticator.verify_ping
<labrelay.server.auth.Authenticator.verify_ping>`).

A control keeps the settings of its login (``token``, ``authenticate_*``,
``heartbeat_timeout``): a reload that changes them applies to the next
logins, and this client's tunnels carry on as they were set up.

A NewProxy that finds the server's registration budget spent
(:mod:`labrelay.server.budget`) is held, with every message after it, and
the connection paused, until the budget allows; so a client pipelining
large NewProxy messages cannot hold the reactor.

Its log lines (login, logout, proxy start and close) carry ``key=value``
fields (:func:`labrelay.logs.kv_fields`): ``client_addr``, ``run_id``,
``user``, ``version``, ``proxy``, ``type``, ``remote_port`` or
``domains`` (the first :data:`LOGGED_DOMAINS` and how many more: a proxy
may have a hundred).
"""

from collections import deque

from twisted.logger import Logger

from .. import FRP_VERSION
from ..errors import ProxyError
from ..logs import kv_fields
from ..protocol import messages
from ..protocol.crypto import derive_key
from .workpool import WorkConnPool


def carrier_of(connection):
    """What carries *connection* over the network: its yamux session under
    tcp_mux, else its own transport (one TCP connection either way)."""
    transport = connection.transport
    return getattr(transport, "session", None) or transport


#: Domains of a proxy named in one log line.
LOGGED_DOMAINS = 5


def shortened(items, shown: int = LOGGED_DOMAINS) -> str:
    """*items* joined by commas, the first *shown* only and then how many
    more (``a,b,c (+97 more)``)."""
    items = list(items)
    text = ",".join(items[:shown])
    if len(items) > shown:
        text += f" (+{len(items) - shown} more)"
    return text


def proxy_target(proxy) -> dict:
    """The log field naming where *proxy* is published: ``remote_port``
    (tcp) or ``domains`` (http)."""
    if proxy.type in ("tcp", "udp"):
        return {"remote_port": getattr(proxy, "remote_port", 0)}
    return {"domains": shortened(getattr(proxy, "domains", ()))}


class ControlSession:
    _log = Logger()

    def __init__(self, context, connection, login, run_id: str):
        self.context = context
        self.connection = connection
        self.login = login
        self.run_id = run_id
        self.peer = connection.peer
        self.source = connection.source
        self.carrier = carrier_of(connection)
        self.proxies = {}  # name -> proxy
        self.closed = False
        self._started = False
        config = context.config
        # This login's settings (see the module docstring).
        self.token = config.token
        self.authenticate_heartbeats = config.authenticate_heartbeats
        self.authenticate_new_work_conns = config.authenticate_new_work_conns
        self.heartbeat_timeout = config.heartbeat_timeout
        self.pool = WorkConnPool(
            context.clock,
            self.request_work_conn,
            capacity=self.pool_count + 10,
            timeout=config.user_conn_timeout,
        )
        self._heartbeat_timer = None
        self.started_at = context.clock.seconds()
        # messages held back by the registration budget, and the call
        # that releases them
        self._held = None
        self._held_call = None

    @property
    def user(self) -> str:
        return self.login.user

    @property
    def version(self) -> str:
        return self.login.version

    @property
    def pool_count(self) -> int:
        """The client's pool_count, clamped to max_pool_count (as frp)."""
        return min(max(self.login.pool_count, 0), self.context.config.max_pool_count)

    def start(self) -> None:
        self.connection.control = self
        self.connection.send(
            messages.LoginResp(version=FRP_VERSION, run_id=self.run_id)
        )
        self.connection.start_encryption(derive_key(self.token))
        self._started = True
        self.context.guard.control_started(self.source)
        for _ in range(self.pool_count):
            self.request_work_conn()
        if self.heartbeat_timeout > 0:
            self._heartbeat_timer = self.context.clock.callLater(
                self.heartbeat_timeout, self._heartbeat_expired
            )
        self._log.info(
            "client login {kv}",
            **kv_fields(
                client_addr=self.peer,
                run_id=self.run_id,
                user=self.user,
                version=self.version,
                pool_count=self.login.pool_count,
            ),
        )

    def request_work_conn(self) -> None:
        if not self.closed:
            self.connection.send(messages.ReqWorkConn())

    # Messages from the client.

    def handle(self, message) -> None:
        if self._held is not None:
            self._held.append(message)
            return
        if isinstance(message, messages.NewProxy):
            delay = self.context.registration_budget.wait()
            if delay > 0:
                self._held = deque([message])
                self.connection.transport.pauseProducing()
                self._held_call = self.context.clock.callLater(
                    delay, self._release_held
                )
                return
        self._handle(message)

    def _release_held(self) -> None:
        """Handle held messages while the budget allows; then read again."""
        self._held_call = None
        held, budget = self._held, self.context.registration_budget
        while held and not self.closed:
            if isinstance(held[0], messages.NewProxy):
                delay = budget.wait()
                if delay > 0:
                    self._held_call = self.context.clock.callLater(
                        delay, self._release_held
                    )
                    return
            self._handle(held.popleft())
        self._held = None
        if not self.closed:
            self.connection.transport.resumeProducing()

    #: message class -> the method handling it (by name, so that a method
    #: patched or overridden later is the one called)
    _HANDLERS = {
        messages.NewProxy: "_new_proxy",
        messages.CloseProxy: "_on_close_proxy",
        messages.Ping: "_ping",
        messages.NatHoleVisitor: "_refuse_nat_hole",
    }

    def _handle(self, message) -> None:
        handler = self._HANDLERS.get(type(message))
        if handler is None:
            self._log.warn(
                "{peer}: ignoring unexpected {name} on the control connection",
                peer=self.peer,
                name=message.name,
            )
            return
        getattr(self, handler)(message)

    def _on_close_proxy(self, message) -> None:
        self._close_proxy(message.proxy_name)

    def _refuse_nat_hole(self, message) -> None:
        self.connection.send(
            messages.NatHoleResp(
                transaction_id=message.transaction_id,
                error="xtcp is not supported by labrelay yet",
            )
        )

    def _new_proxy(self, message) -> None:
        name = message.proxy_name
        self.context.registration_budget.spend(1)
        try:
            if not name:
                raise ProxyError("proxy name is empty")
            if name in self.context.registry.proxies:
                raise ProxyError(f"proxy [{name}] already exists")
            limit = self.context.config.max_proxies_per_client
            if 0 < limit <= len(self.proxies):
                raise ProxyError(
                    f"exceed the max_proxies_per_client ({limit}) of this server"
                )
            limit = self.context.config.max_proxies_total
            if 0 < limit <= len(self.context.registry.proxies):
                raise ProxyError(
                    f"the server holds its max_proxies_total ({limit}) of proxies"
                )
            proxy = self.context.create_proxy(self, message)
            remote_addr = proxy.start()
        except ProxyError as e:
            self._log.warn(
                "{peer}: proxy [{name}] refused: {error}",
                peer=self.peer,
                name=name,
                error=e,
            )
            error = str(e)
            if not self.context.config.detailed_errors_to_client:
                error = f"new proxy [{name}] error"
            self.connection.send(messages.NewProxyResp(proxy_name=name, error=error))
            return
        self.proxies[name] = proxy
        self.context.registry.add_proxy(name, proxy)
        self.context.registration_budget.spend(getattr(proxy, "routes", 1))
        # The line ends as frps's ("proxy [x] (tcp) started at :6000").
        self._log.info(
            "proxy start {kv}; proxy [{name}] ({type}) started at {remote_addr}",
            name=name,
            remote_addr=shortened(remote_addr.split(",")),
            **kv_fields(
                run_id=self.run_id,
                proxy=name,
                type=proxy.type,
                **proxy_target(proxy),
                client_addr=self.peer,
            ),
        )
        self.connection.send(
            messages.NewProxyResp(proxy_name=name, remote_addr=remote_addr)
        )

    def _close_proxy(self, name: str) -> None:
        # Only this control's own proxies: a name registered by another
        # client is not in self.proxies.
        proxy = self.proxies.pop(name, None)
        if proxy is None:
            self._log.debug(
                "{peer}: CloseProxy for [{name}], which this "
                "client does not own; ignored",
                peer=self.peer,
                name=name,
            )
            return
        self.context.registry.remove_proxy(name, proxy)
        proxy.close()
        self._proxy_closed(proxy, "closed by the client")

    def _proxy_closed(self, proxy, why: str) -> None:
        self._log.info(
            "proxy close {kv}",
            **kv_fields(
                run_id=self.run_id,
                proxy=proxy.name,
                type=proxy.type,
                **proxy_target(proxy),
                client_addr=self.peer,
                reason=why,
            ),
        )

    def _ping(self, message) -> None:
        verdict = self.context.authenticator.verify_ping(self, message)
        if not verdict.accepted:
            self.context.refusals.refused(self.peer, verdict)
            self.connection.send(messages.Pong(error=verdict.client))
            self.close("authentication of a heartbeat failed")
            return
        if self._heartbeat_timer is not None:
            self._heartbeat_timer.reset(self.heartbeat_timeout)
        self.connection.send(messages.Pong())

    def _heartbeat_expired(self) -> None:
        self._heartbeat_timer = None
        self._log.warn(
            "{peer}: no heartbeat for {seconds}s; closing the control connection",
            peer=self.peer,
            seconds=self.heartbeat_timeout,
        )
        self.close("heartbeat timeout")

    # Work connections.

    def accept_work_conn(self, connection) -> None:
        connection.become_work_connection(self)
        self.pool.put(connection)

    # Ending.

    def close(self, why: str) -> None:
        """Close the control connection and everything the client owns."""
        if not self.closed:
            self._teardown(why)
        self.connection.transport.loseConnection()

    def connection_lost(self, reason) -> None:
        if not self.closed:
            self._teardown("control connection closed")

    def _teardown(self, why: str) -> None:
        self.closed = True
        self._held = None
        if self._held_call is not None:
            self._held_call.cancel()
            self._held_call = None
        if self._heartbeat_timer is not None:
            self._heartbeat_timer.cancel()
            self._heartbeat_timer = None
        for name, proxy in list(self.proxies.items()):
            self.context.registry.remove_proxy(name, proxy)
            proxy.close()
            self._proxy_closed(proxy, why)
        self.proxies.clear()
        self.pool.close()
        self.context.registry.remove_control(self)
        if self._started:
            self.context.guard.control_ended(self.source)
        self._log.info(
            "client logout {kv}",
            **kv_fields(
                client_addr=self.peer,
                run_id=self.run_id,
                user=self.user,
                version=self.version,
                reason=why,
                duration_ms=round(
                    (self.context.clock.seconds() - self.started_at) * 1000
                ),
            ),
        )
