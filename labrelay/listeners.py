"""
Listeners that must be bound when the program starts.

A plain ``StreamServerEndpointService`` only logs a bind failure and lets the
process run without its port.  :class:`StartupListener` makes twistd fail
instead, with one line (``labrelay-server: cannot listen on 0.0.0.0:7000:
[Errno 98] Address already in use``) and a non-zero exit, for every
start-up port: the bind port, the vhost, the dashboard, the client's admin
API.

twistd daemonises (without ``-n``) *before* it starts services, and its
waiting parent only hears of an ``Exception`` raised while they start; a
bare ``SystemExit`` left it waiting for ever.  So the taps call
:func:`probe_startup_listeners` while the process is still in the
foreground, which binds each address once and releases it: a port that is
taken fails there, with the one line and exit status 1, before any fork.
A bind that still fails later (the port was taken in between) raises
:class:`StartupFailure`, which twistd's daemon parent reports and exits 1
on, and which ends a foreground process with the same one line.
"""

import socket

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IServiceCollection
from twisted.internet.endpoints import _parseServer, serverFromString
from twisted.internet.error import CannotListenError


class StartupFailure(SystemExit, Exception):
    """
    A start-up listener could not bind: a ``SystemExit`` (one line, exit
    status 1, no traceback) that is also an ``Exception``, so twistd's
    daemonising parent is told instead of waiting.
    """


class StartupListener(StreamServerEndpointService):
    """
    :param program: named in the error line (``labrelay-server``).
    :param setting: what the address came from, when it helps the reader
        (``admin_addr:admin_port``); empty for the main ports.
    """

    def __init__(
        self, reactor, description: str, factory, *, program: str, setting: str = ""
    ):
        super().__init__(serverFromString(reactor, description), factory)
        # Raise the bind failure from privilegedStartService instead of
        # logging it (Twisted's strports.service does the same).
        self._raiseSynchronously = True
        self._description = description
        self._program = program
        self._setting = f"{setting} " if setting else ""

    def _failure(self, interface: str, port, error) -> StartupFailure:
        return StartupFailure(
            f"{self._program}: cannot listen on {self._setting}"
            f"{interface or '*'}:{port}: {error}"
        )

    def privilegedStartService(self):
        try:
            super().privilegedStartService()
        except CannotListenError as e:
            raise self._failure(e.interface, e.port, e.socketError) from None

    def probe(self) -> None:
        """
        Bind this listener's TCP address once and release it at once
        (raising :class:`StartupFailure` if that fails), so a taken port is
        reported before twistd daemonises.  Port 0 and descriptions that
        are not plain TCP are not probed.
        """
        try:
            kind, args, kwargs = _parseServer(self._description, None)
        except (ValueError, KeyError, TypeError):
            return
        if kind != "TCP" or not args or not int(args[0]):
            return
        port = int(args[0])
        interface = kwargs.get("interface", "")
        family = socket.AF_INET6 if ":" in interface else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            # as Twisted's own listenTCP, so a port in TIME_WAIT binds
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((interface, port))
            except OSError as e:
                raise self._failure(interface, port, e) from None

    def when_listening(self):
        """A Deferred firing with the IListeningPort."""
        return self._waitingForPort


def startup_listeners(root):
    """Every :class:`StartupListener` in the service tree under *root*."""
    if isinstance(root, StartupListener):
        yield root
    children = IServiceCollection(root, None)
    if children is not None:
        for child in children:
            yield from startup_listeners(child)


def probe_startup_listeners(root) -> None:
    """:meth:`StartupListener.probe` each start-up listener under *root*."""
    for listener in startup_listeners(root):
        listener.probe()
