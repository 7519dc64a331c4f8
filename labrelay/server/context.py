"""
What the server's pieces share: :class:`ServerContext`, handed to the
bind port's sessions and connections, the controls, the proxies and the
vhost instead of the whole :class:`~labrelay.server.service.RelayServer`.

It holds the server-wide records and policies (registry, ports, stats,
guard, authenticator, throttle, budgets) and getters for the two values
that change while the server runs (the config, on reload; the first
message timeout, which tests shorten).  It starts and listens for
nothing: the service builds it and wires the listeners.
"""

from typing import Any, Callable

import attrs


@attrs.frozen
class ServerContext:
    """
    :ivar reactor: listens for the tcp proxies (``IReactorTCP``).
    :ivar clock: every timer and timestamp (``IReactorTime``).
    :ivar get_config: the running
        :class:`~labrelay.config.ServerConfig` (:attr:`config` reads it).
    :ivar registry: clients and proxies
        (:class:`~labrelay.server.stats.StatsRegistry`).
    :ivar ports: the :class:`~labrelay.server.ports.PortAllocator`.
    :ivar udp_ports: the udp proxies' own
        :class:`~labrelay.server.ports.PortAllocator` (None: ``ports``).
    :ivar stats: the :class:`~labrelay.server.stats.ServerStats`.
    :ivar guard: the :class:`~labrelay.server.guard.SourceGuard`.
    :ivar authenticator: the :class:`~labrelay.server.auth.Authenticator`.
    :ivar throttle: the :class:`~labrelay.throttle.PasswordThrottle` (the
        vhost's Basic auth goes through it).
    :ivar refusals: the :class:`~labrelay.server.refusals.RefusalLog`.
    :ivar registration_budget: the
        :class:`~labrelay.server.budget.RegistrationBudget` of NewProxy.
    :ivar buffer_budget: the yamux sessions'
        :class:`~labrelay.mux.budget.BufferBudget`.
    :ivar connections: every frp and user connection
        (:class:`~labrelay.tracking.ConnectionSet`), closed at shutdown.
    :ivar sessions: the live yamux sessions of the bind port.
    :ivar first_message_timeout: seconds a connection has for its first
        message, read when its timer starts.
    :ivar create_proxy: ``(control, NewProxy) -> proxy`` of the type the
        message asks for; raises :class:`~labrelay.errors.ProxyError`.
    """

    reactor: Any
    clock: Any
    get_config: Callable[[], Any]
    registry: Any
    ports: Any
    stats: Any
    guard: Any
    authenticator: Any
    throttle: Any
    refusals: Any
    registration_budget: Any
    buffer_budget: Any
    connections: Any
    sessions: set
    first_message_timeout: Callable[[], float]
    create_proxy: Callable[[Any, Any], Any]
    udp_ports: Any = None

    @property
    def config(self):
        """The running :class:`~labrelay.config.ServerConfig`."""
        return self.get_config()

    def log_auth_failure(self, peer: str, problem: str, checked) -> None:
        """Log a failed password check (see
        :meth:`~labrelay.server.refusals.RefusalLog.auth_failure`)."""
        self.refusals.auth_failure(peer, problem, checked)
