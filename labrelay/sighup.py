# -*- test-case-name: tests.unit.test_server_reload,tests.integration.test_server_reload,tests.unit.test_reload,tests.integration.test_reload -*-
"""
SIGHUP as "reload your config file", for the server and the client alike.

:class:`SighupHandler` installs a handler while a service runs and puts the
previous one back when it stops.  What a reload does is each side's own
(:mod:`labrelay.server.reload`, :mod:`labrelay.client.reload`).
"""

import signal


class SighupHandler:
    """
    Calls *reload* in the reactor on SIGHUP while installed; :meth:`restore`
    puts the previous handler back.

    A signal handler may run in the middle of reactor code, so it only
    hands the work over (``callFromThread`` is safe from handlers).
    """

    def __init__(self, reactor, reload):
        self._reactor = reactor
        self._reload = reload
        self._previous = None  # (handler,) while ours is installed

    def install(self) -> None:
        sighup = getattr(signal, "SIGHUP", None)
        if sighup is None or self._previous is not None:
            return
        try:
            self._previous = (signal.signal(sighup, self.on_signal),)
        except ValueError:  # not the main thread: no handler
            self._previous = None

    def restore(self) -> None:
        if self._previous is None:
            return
        (previous,), self._previous = self._previous, None
        if signal.getsignal(signal.SIGHUP) == self.on_signal:
            # None: a handler not set from Python; the default is the best
            # that can be put back.
            signal.signal(
                signal.SIGHUP, signal.SIG_DFL if previous is None else previous
            )

    def on_signal(self, signum, frame) -> None:
        self._reactor.callFromThread(self._reload)


__all__ = ["SighupHandler"]
