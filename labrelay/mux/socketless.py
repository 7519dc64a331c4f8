# -*- test-case-name: tests.unit.test_yamux_session,tests.integration.test_yamux_session -*-
"""
What a yamux stream answers, as an ``ITCPTransport``, without a socket of
its own: its addresses are those of its session's connection, and the TCP
options belong to that connection (Nagle is off for a stream's frames
anyway, and the session's keepalive Pings cover every stream).
"""


class SocketlessTransport:
    """
    Base of :class:`~labrelay.mux.stream.YamuxStream`: the ``ITCPTransport``
    methods that do not depend on the stream's state.  A subclass sets
    ``_session`` and provides ``write``.
    """

    _session = None

    @property
    def session(self):
        """The :class:`~labrelay.mux.session.YamuxSession` carrying this
        stream (the server counts Logins per TCP connection by it)."""
        return self._session

    def writeSequence(self, iovec) -> None:
        self.write(b"".join(iovec))

    def getPeer(self):
        return self._session.transport.getPeer()

    def getHost(self):
        return self._session.transport.getHost()

    def setTcpNoDelay(self, enabled) -> None:
        """Harmless: a stream has no socket of its own."""

    def getTcpNoDelay(self) -> bool:
        return True

    def setTcpKeepAlive(self, enabled) -> None:
        """Harmless: the session's own keepalive pings cover every stream."""

    def getTcpKeepAlive(self) -> bool:
        return False
