"""
Keeping track of open connections so a service can close them all and
wait until they are gone (a clean stop, and a clean reactor in tests).
"""

from twisted.internet.defer import Deferred, succeed


class ConnectionSet:
    """Protocols with a live transport; ``close_all`` ends them and waits."""

    def __init__(self):
        self._open = set()
        self._waiters = []

    def __len__(self):
        return len(self._open)

    def __iter__(self):
        return iter(list(self._open))

    def add(self, protocol) -> None:
        self._open.add(protocol)

    def remove(self, protocol) -> None:
        self._open.discard(protocol)
        if not self._open:
            waiters, self._waiters = self._waiters, []
            for d in waiters:
                d.callback(None)

    def close_all(self, abort: bool = True) -> Deferred:
        """Close every connection; the Deferred fires when all are gone."""
        for protocol in list(self._open):
            transport = getattr(protocol, "transport", None)
            if transport is None:
                self.remove(protocol)
                continue
            if abort and hasattr(transport, "abortConnection"):
                transport.abortConnection()
            else:
                transport.loseConnection()
        if not self._open:
            return succeed(None)
        d = Deferred()
        self._waiters.append(d)
        return d
