# -*- test-case-name: tests.test_admin -*-
"""
Where the client's admin API listens: :class:`AdminServer` is one
listener (a start-up listener: a port already taken fails start-up) with
its open connections.

Without a password on an address other than the loopback, start-up logs a
loud warning (:func:`exposure_warning`).
"""

from __future__ import annotations

import ipaddress

from twisted.internet.defer import maybeDeferred, succeed
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger

from ..endpoints import server_endpoint_description
from ..listeners import StartupListener
from ..web import QuietSite, TrackingFactory
from .admin import AdminResource


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
        if addr != "" and (addr == "localhost" or
                           ipaddress.ip_address(addr).is_loopback):
            return None
    except ValueError:
        pass  # a host name: may be anything
    return (f"the admin API on admin_addr = {config.admin_addr or '0.0.0.0'}"
            f", port {config.admin_port} has NO PASSWORD and is not on the "
            f"loopback: anyone who can reach it can read the config, "
            f"stop the client and add proxies to this machine's services. "
            f"Set admin_user and admin_pwd, or admin_addr = 127.0.0.1")


class AdminServer:
    """
    The admin API's listener (a start-up listener: a port already taken
    fails start-up) and its open connections.

    :param description: an endpoint description to listen on.
    """

    _log = Logger()

    def __init__(self, client, reactor, description: str):
        warning = exposure_warning(client.config)
        if warning is not None:
            self._log.critical("{exposure}", exposure=warning)
        self.description = description
        self.resource = AdminResource(client, reactor)
        self._factory = TrackingFactory(
            QuietSite(self.resource, reactor=reactor), "admin API")
        self.connections = self._factory.connections
        self._reactor = reactor
        self._port = None
        self.service = StartupListener(
            reactor, description, self._factory,
            program="labrelay-client", setting="admin_addr:admin_port")

    def when_listening(self):
        """A Deferred firing with the IListeningPort."""
        if self._port is not None:
            return succeed(self._port)
        return self.service.when_listening()

    def listen(self):
        """Listen now, outside start-up (a reload): a Deferred firing with
        the IListeningPort, or failing with the bind error (nothing to
        stop then)."""
        d = serverFromString(self._reactor, self.description).listen(
            self._factory)

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


__all__ = ["AdminServer", "admin_description", "exposure_warning"]
