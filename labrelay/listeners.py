"""
Listeners that must be bound when the program starts.

A plain ``StreamServerEndpointService`` only logs a bind failure and lets the
process run without its port.  :class:`StartupListener` makes twistd fail
instead, with one line (``labrelay-server: cannot listen on 0.0.0.0:7000:
[Errno 98] Address already in use``) and a non-zero exit, for every
start-up port: the bind port, the vhost, the dashboard, the client's admin
API.
"""

from twisted.application.internet import StreamServerEndpointService
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError


class StartupListener(StreamServerEndpointService):
    """
    :param program: named in the error line (``labrelay-server``).
    :param setting: what the address came from, when it helps the reader
        (``admin_addr:admin_port``); empty for the main ports.
    """

    def __init__(self, reactor, description: str, factory, *,
                 program: str, setting: str = ""):
        super().__init__(serverFromString(reactor, description), factory)
        # Raise the bind failure from privilegedStartService instead of
        # logging it (Twisted's strports.service does the same).
        self._raiseSynchronously = True
        self._program = program
        self._setting = f"{setting} " if setting else ""

    def privilegedStartService(self):
        try:
            super().privilegedStartService()
        except CannotListenError as e:
            raise SystemExit(
                f"{self._program}: cannot listen on {self._setting}"
                f"{e.interface or '*'}:{e.port}: {e.socketError}") from None

    def when_listening(self):
        """A Deferred firing with the IListeningPort."""
        return self._waitingForPort
