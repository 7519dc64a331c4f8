# -*- test-case-name: tests.unit.test_admin,tests.integration.test_admin,tests.system.test_admin,tests.unit.test_reload,tests.integration.test_reload -*-
"""
Where the client's admin API listens, over the client's life.

:class:`AdminServer` is one listener (a start-up listener: a port already
taken fails start-up) with its open connections; :class:`AdminListeners`
is the client's current one and what a reload does to it: new
credentials apply to the next request, a new ``admin_addr``/``admin_port``
binds the new address first and only then leaves the old one (which stays
if the new one cannot bind), ``admin_port = 0`` stops it; every listener,
current or left, is closed when the client stops.

Without a password on an address other than the loopback, start-up logs a
loud warning (:func:`exposure_warning`).
"""

from __future__ import annotations

import ipaddress

import attrs
from twisted.internet.defer import Deferred, gatherResults, maybeDeferred, succeed
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger

from ..endpoints import server_endpoint_description
from ..listeners import StartupListener


def admin_description(addr: str, port: int) -> str:
    """The endpoint description of ``admin_addr:admin_port``."""
    return server_endpoint_description(addr, port)


def exposure_warning(config):
    """
    The warning to log at start when the admin API answers anyone who
    reaches it (no ``admin_user``/``admin_pwd``) on an address other than
    the loopback; None when not.
    """
    if config.admin_user or config.admin_pwd:
        return None
    addr = config.admin_addr.strip().strip("[]")
    try:
        if addr != "" and (
            addr == "localhost" or ipaddress.ip_address(addr).is_loopback
        ):
            return None
    except ValueError:
        pass  # a host name: may be anything
    return (
        f"the admin API on admin_addr = {config.admin_addr or '0.0.0.0'}"
        f", port {config.admin_port} has NO PASSWORD and is not on the "
        f"loopback: anyone who can reach it can read the config, "
        f"stop the client and add proxies to this machine's services. "
        f"Set admin_user and admin_pwd, or admin_addr = 127.0.0.1"
    )


class AdminServer:
    """
    The admin API's listener (a start-up listener: a port already taken
    fails start-up) and its open connections.

    :param description: an endpoint description to listen on.
    """

    _log = Logger()

    def __init__(self, client, reactor, description: str):
        # twisted.web and the API's resources: only in a client that serves it
        from ..web import QuietSite, TrackingFactory
        from .admin import AdminResource

        warning = exposure_warning(client.config)
        if warning is not None:
            self._log.critical("{exposure}", exposure=warning)
        self.description = description
        self.resource = AdminResource(client, reactor)
        self._factory = TrackingFactory(
            QuietSite(self.resource, reactor=reactor), "admin API"
        )
        self.connections = self._factory.connections
        self._reactor = reactor
        self._port = None
        self.service = StartupListener(
            reactor,
            description,
            self._factory,
            program="labrelay-client",
            setting="admin_addr:admin_port",
        )

    def when_listening(self):
        """A Deferred firing with the IListeningPort."""
        if self._port is not None:
            return succeed(self._port)
        return self.service.when_listening()

    def listen(self):
        """Listen now, outside start-up (a reload): a Deferred firing with
        the IListeningPort, or failing with the bind error (nothing to
        stop then)."""
        d = serverFromString(self._reactor, self.description).listen(self._factory)

        def listening(port):
            self._port = port
            return port

        return d.addCallback(listening)

    def stop_listening(self):
        """Stop accepting (a reload moved or turned off the API); requests
        already under way, such as the one that asked for the reload, are
        answered.  A Deferred."""
        if self._port is not None:
            port, self._port = self._port, None
            return maybeDeferred(port.stopListening)
        if self.service.parent is not None:
            return maybeDeferred(self.service.disownServiceParent)
        return succeed(None)

    def close(self):
        """Stop listening, cancel pending answers, close every admin
        connection; a Deferred firing once they are gone."""
        self.resource.close()
        stopped = self.stop_listening()
        closed = self.connections.close_all()
        return stopped.addCallback(lambda _: closed)


class AdminListeners:
    """
    The admin API of one :class:`~labrelay.client.service.RelayClient`:
    the listener it starts with (when ``admin_port`` > 0 or *listen* is
    given, as a child service of the client), and those a reload moved
    away from.

    :param listen: an endpoint description overriding admin_addr and
        admin_port (tests listen on port 0).
    """

    _log = Logger()

    def __init__(self, client, reactor, listen=None):
        self._client = client
        self._reactor = reactor
        #: the :class:`AdminServer` answering now, or None
        self.current = None
        self._retired = []
        self._settled = succeed(None)
        config = client.config
        if config.admin_port > 0 or listen:
            self.current = AdminServer(
                client,
                reactor,
                listen or (admin_description(config.admin_addr, config.admin_port)),
            )
            self.current.service.setServiceParent(client)

    def when_listening(self):
        """A Deferred firing with the current IListeningPort."""
        return self.current.when_listening()

    def when_settled(self) -> Deferred:
        """A Deferred firing once the last reload's changes are done (the
        new listener listening, the old one closed)."""
        d = Deferred()
        self._settled.addBoth(lambda result: (d.callback(None), result)[1])
        return d

    def apply(self, new) -> Deferred:
        """A reload's admin settings (*new* a ClientConfig); a Deferred
        firing when done."""
        d = self._apply(new)
        self._settled = d
        return d

    def _apply(self, new) -> Deferred:
        """
        New credentials apply to the next request; a new
        ``admin_addr``/``admin_port`` starts, moves or stops the listener.
        A move binds the new address first and leaves the old one serving
        if that fails (logged).
        """
        client = self._client
        old = client.config
        client.config = attrs.evolve(
            old, admin_user=new.admin_user, admin_pwd=new.admin_pwd
        )
        if (new.admin_addr, new.admin_port) == (old.admin_addr, old.admin_port):
            return succeed(None)
        retired = self.current
        if new.admin_port <= 0:
            client.config = attrs.evolve(
                client.config, admin_addr=new.admin_addr, admin_port=new.admin_port
            )
            self.current = None
            self._log.info("reload: admin API turned off")
            return self._retire(retired)
        where = admin_description(new.admin_addr, new.admin_port)
        client.config = attrs.evolve(
            client.config, admin_addr=new.admin_addr, admin_port=new.admin_port
        )
        candidate = AdminServer(client, self._reactor, where)

        def listening(port):
            self.current = candidate
            self._log.info(
                "reload: admin API now on {address}",
                address=f"{new.admin_addr or '0.0.0.0'}:{port.getHost().port}",
            )
            return self._retire(retired)

        def failed(failure):
            client.config = attrs.evolve(
                client.config, admin_addr=old.admin_addr, admin_port=old.admin_port
            )
            self._log.error(
                "reload: the admin API cannot listen on "
                "{address}: {error}; it stays where it was",
                address=f"{new.admin_addr or '0.0.0.0'}:{new.admin_port}",
                error=failure.getErrorMessage(),
            )

        return candidate.listen().addCallbacks(listening, failed)

    def _retire(self, admin) -> Deferred:
        """Stop *admin* listening; its open connections finish (and are
        closed at the latest when the client stops)."""
        if admin is None:
            return succeed(None)
        self._retired.append(admin)
        return admin.stop_listening()

    def close(self) -> Deferred:
        """Close every listener, current and retired, and their
        connections; a Deferred firing once they are gone."""
        return gatherResults(
            [
                admin.close()
                for admin in [self.current] + self._retired
                if admin is not None
            ]
        )


__all__ = ["AdminServer", "AdminListeners", "admin_description", "exposure_warning"]
