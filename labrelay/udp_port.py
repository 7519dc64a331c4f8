# -*- test-case-name: tests.unit.test_udp_work -*-
"""
UDP ports that do not log their opening and closing.

Twisted's ``udp.Port`` writes "... starting on N" and "(UDP Port N
Closed)" for every port, whatever its protocol's ``noisy`` says.  A udp
proxy's client opens one port per user, so a user who sends from many
source ports would make two log lines each: :func:`listen_udp` opens the
same port without them.  This reads ``udp.Port``'s private attributes (as
its own ``_bindSocket`` and ``connectionLost`` do), so it is confined here
and checked by the tests that open ports through it.
"""

from twisted.internet import base, udp
from twisted.internet.error import CannotListenError
from twisted.internet.posixbase import PosixReactorBase


class QuietPort(udp.Port):
    """A ``udp.Port`` without its two log lines."""

    def _bindSocket(self):
        try:
            skt = self.createInternetSocket()
            skt.bind((self.interface, self.port))
        except OSError as e:
            raise CannotListenError(self.interface, self.port, e) from None
        self._realPortNumber = skt.getsockname()[1]
        self.connected = 1
        self.socket = skt
        self.fileno = self.socket.fileno

    def connectionLost(self, reason=None):
        self._realPortNumber = None
        self.maxThroughput = -1
        base.BasePort.connectionLost(self, reason)
        self.protocol.doStop()
        self.socket.close()
        del self.socket
        del self.fileno
        if hasattr(self, "d"):
            self.d.callback(None)
            del self.d


def listen_udp(reactor, port, protocol, interface="", maxPacketSize=8192):
    """``reactor.listenUDP`` without log lines (on a real reactor; a test's
    fake reactor is asked as it is)."""
    if not isinstance(reactor, PosixReactorBase):
        return reactor.listenUDP(
            port, protocol, interface=interface, maxPacketSize=maxPacketSize
        )
    listening = QuietPort(port, protocol, interface, maxPacketSize, reactor)
    listening.startListening()
    return listening
