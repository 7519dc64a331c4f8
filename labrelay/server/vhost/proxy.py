# -*- test-case-name: tests.unit.test_vhost,tests.integration.test_vhost,tests.integration.test_vhost_reuse -*-
"""
``type = http`` proxies (:class:`HttpProxy`): registration on the vhost
route table (domains, locations, the server's route limits), the route
target's settings (Basic auth, Host rewrite, ``header_*``), and opening
work connections for requests (:meth:`HttpProxy.open_work`, which the
exchange calls instead of reaching the client's control connection or
pool).

Work connections that carried a complete exchange are kept idle here
(:class:`~labrelay.server.vhost.idle.IdleWork`) for the proxy's next
requests: at most :attr:`Vhost.max_idle_work` per proxy, most recently
used first, all closed when the proxy closes; beyond the first
:attr:`Vhost.idle_work_kept` they stay idle only
:attr:`Vhost.surplus_idle_timeout` seconds.
"""

import hmac

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from .. import domains as named_domains  # a module: it imports vhost.routes
from ..proxy_base import ProxyBase, WaitsForWork
from ..worklink import start_work_link
from .exchange import WorkUnavailable
from .idle import IdleWork


class _WorkRequest(WaitsForWork):
    """
    One request's wait for a pooled work connection: the "user" that
    :meth:`ProxyBase.get_work_connection` serves, and the Deferred
    :meth:`HttpProxy.open_work` returned (cancelling it ends the wait).
    """

    def __init__(self, peer: str):
        self.peer = peer
        self.ended = False
        self.deferred = Deferred(self._cancel)

    def _cancel(self, deferred) -> None:
        self.ended = True
        self.stop_waiting()


class HttpProxy(ProxyBase):
    """One ``type = http`` proxy: its routes and its request forwarding."""

    type = "http"
    _log = Logger()

    def __init__(self, context, control, message, vhost):
        super().__init__(context, control, message)
        self.vhost = vhost
        self.http_user = message.http_user
        self.http_pwd = message.http_pwd
        self.host_header_rewrite = message.host_header_rewrite
        self.set_headers = tuple((message.headers or {}).items())
        self.route_by_http_user = message.route_by_http_user
        self.domains = []
        self.locations = list(message.locations or []) or [""]
        self.closed = False
        self._idle = []  # IdleWork, most recently used last

    def _wanted_domains(self) -> list:
        """Domains from custom_domains and subdomain, validated as frps."""
        return named_domains.wanted_domains(
            self.message, self.context.config.subdomain_host
        )

    def _check_route_limits(self, domains: list) -> None:
        """Refuse a proxy with more route keys than the server allows
        (:func:`~labrelay.server.domains.check_route_limits`)."""
        named_domains.check_route_limits(
            self.context.config, domains, len(self.locations), len(self.vhost.routes)
        )

    def start(self) -> str:
        domains = self._wanted_domains()
        self._check_route_limits(domains)
        self.vhost.routes.add(
            [
                (domain, location, self.route_by_http_user)
                for domain in domains
                for location in self.locations
            ],
            self,
        )
        self.domains = domains
        self.routes = len(domains) * len(self.locations)
        port = self.vhost.port
        return ",".join(
            domain if port == 80 else f"{domain}:{port}" for domain in domains
        )

    def close(self) -> None:
        self.closed = True
        self.vhost.routes.remove(self)
        for idle in list(self._idle):
            idle.drop("the proxy closed")

    # Idle work connections (keep-alive toward the backend).

    def take_idle_work(self):
        """The most recently idled live work connection (a WorkLink), or
        None."""
        while self._idle:
            link = self._idle.pop().take()
            if link is not None:
                return link
        return None

    def keep_idle(self, link) -> None:
        """*link* carried a complete exchange: keep it for the next one, or
        close it if the proxy is closed or keeps enough already."""
        work = link.work
        if not work.alive:
            return
        if self.closed or len(self._idle) >= self.vhost.max_idle_work:
            work.transport.loseConnection()
            return
        vhost = self.vhost
        timeout = vhost.idle_work_timeout
        if len(self._idle) >= vhost.idle_work_kept:
            timeout = min(timeout, vhost.surplus_idle_timeout)  # a burst's
        self._idle.append(IdleWork(self, link, vhost.clock, timeout))

    def forget_idle(self, idle) -> None:
        if idle in self._idle:
            self._idle.remove(idle)

    @property
    def idle_work_count(self) -> int:
        return len(self._idle)

    def check_auth(self, user: str, password: str) -> bool:
        """Whether basic-auth credentials pass this proxy's http_user/pwd."""
        if not (self.http_user or self.http_pwd):
            return True
        return hmac.compare_digest(
            user.encode(), self.http_user.encode()
        ) and hmac.compare_digest(password.encode(), self.http_pwd.encode())

    def open_work(self, peer: str, src: tuple):
        """
        A Deferred of a started :class:`~labrelay.server.worklink.WorkLink`
        for one request of user *peer* (address *src*): the most recently
        idled work connection (fired at once), else one from the client's
        pool, started now (StartWorkConn).  It fails with
        :class:`~labrelay.server.vhost.exchange.WorkUnavailable` when there
        is none in time; cancelling it gives up the wait (the user left).
        """
        link = self.take_idle_work()
        if link is not None:
            return succeed(link)
        request = _WorkRequest(peer)
        self.get_work_connection(
            request,
            lambda work: request.deferred.callback(
                start_work_link(self, work, src=src)
            ),
        )
        return request.deferred

    def user_refused(self, request, error) -> None:
        """No work connection for *request*: 502 once the client is gone,
        else 504 (it did not give one in time)."""
        status = 502 if self.control.closed else 504
        request.deferred.errback(WorkUnavailable(error, status))
