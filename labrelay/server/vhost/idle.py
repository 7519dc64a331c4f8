# -*- test-case-name: tests.integration.test_vhost_reuse -*-
"""
Work connections kept idle between HTTP requests (:class:`IdleWork`).

A work connection whose exchange ended cleanly is kept by its proxy and
carries that proxy's next request, as frp's reverse proxy keeps upstream
keep-alive connections: at most :attr:`Vhost.max_idle_work` per proxy, each
closed after :attr:`Vhost.idle_work_timeout` seconds idle (beyond the
first :attr:`Vhost.idle_work_kept`, after
:attr:`Vhost.surplus_idle_timeout`), when its peer closes it or sends
anything while idle, and when the proxy closes.  The
connection keeps its payload codec (the cipher and compression streams
continue), and StartWorkConn is sent only on its first use.
"""

from twisted.logger import Logger
from zope.interface import implementer

from ...interfaces import ISink

__all__ = ["IdleWork"]


@implementer(ISink)
class IdleWork:
    """
    An idle work connection kept by *proxy* for its next request: it is the
    connection's ``sink`` while idle, so EOF, loss or any data (a backend
    must not talk between requests) drop it; so does *timeout*.
    """

    _log = Logger()

    def __init__(self, proxy, link, clock, timeout):
        self.proxy = proxy
        self.link = link
        self.dropped = False
        link.work.sink = self
        self._timer = clock.callLater(timeout, self.drop, "idle timeout")

    def take(self):
        """Stop idling; the link, or None if its connection is gone."""
        self._stop()
        if not self.link.work.alive:
            return None
        self.link.work.sink = None
        return self.link

    def drop(self, why: str) -> None:
        """Close the connection and forget it."""
        if self.dropped:
            return
        self._stop()
        self.proxy.forget_idle(self)
        work = self.link.work
        self._log.debug(
            "proxy [{name}]: closing idle work connection {peer}: {why}",
            name=self.proxy.name,
            peer=getattr(work, "peer", "?"),
            why=why,
        )
        if work.alive:
            work.transport.loseConnection()

    def _stop(self) -> None:
        self.dropped = True
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None

    # The sink interface of the connection while idle.

    def forward(self, source, data: bytes) -> None:
        self.drop("data on an idle work connection")

    def end_of_input(self, source) -> None:
        self.drop("closed by the client while idle")

    def connection_lost(self, source, reason) -> None:
        self.drop("lost while idle")
