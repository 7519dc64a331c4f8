"""
The contracts between labrelay's parts that are not class hierarchies.

Each interface names what one part expects of objects it does not create,
so that a new proxy type, a new kind of splice end or a test fake knows
what to provide; ``tests/unit/test_interfaces.py`` checks the real classes with
``verifyObject``.  Like Twisted's own interfaces these describe, they do
not enforce: nothing calls ``providedBy`` on the data path.

* :class:`ISink` and :class:`ICountedSink`: where a relayed connection's
  input goes (a :class:`~labrelay.relay.Splice`, an HTTP exchange, an idle
  work connection's keeper), and those among them that carry a user's
  connection and count its bytes;
* :class:`IProxy`: a proxy as the control, registry, dashboard and stats
  see it, with its traffic accounting;
* :class:`IWaitsForWork` and :class:`IWorkConnPool`: a party waiting for a
  work connection, and the pool of one client's idle work connections;
* :class:`IAdmission` and :class:`IAdmissionHolder`: an unauthenticated
  connection counted against its source, and the protocol holding it.
"""

from zope.interface import Attribute, Interface


class ISink(Interface):
    """
    Where a :class:`~labrelay.relay.RelayedProtocol` sends its input once
    its ``sink`` attribute is set.  Every call names the protocol it comes
    from, so one sink can serve both ends of a splice.
    """

    def forward(source, data):
        """Bytes arrived on *source*."""

    def end_of_input(source):
        """*source*'s peer will send no more (a half-close)."""

    def connection_lost(source, reason):
        """*source*'s connection is gone (a Failure, or None)."""


class ICountedSink(ISink):
    """
    A sink that carries one user connection of a proxy (a raw splice, an
    HTTP exchange) and counts its bytes on the wire.  The proxy reads the
    counters while the sink is open (:meth:`IProxy.traffic`), so the relay
    path adds nothing to count.
    """

    bytes_a_to_b = Attribute("bytes received from the user so far")
    bytes_b_to_a = Attribute("bytes received from the work side (for the user) so far")


class IProxy(Interface):
    """
    One registered proxy (``type = tcp``, ``type = http``) of a client.

    The sinks that carry its user connections report to it
    (:meth:`sink_opened`, :meth:`sink_closed`, :meth:`sink_replaced`);
    :meth:`traffic` adds up the closed ones and reads the open ones.
    """

    name = Attribute("the proxy's name (NewProxy's proxy_name)")
    type = Attribute('the frp proxy type: "tcp", "http"')
    control = Attribute("the ControlSession of the client that registered it")
    message = Attribute("the NewProxy message it was registered with")
    total_connections = Attribute("user connections carried so far")
    active_splices = Attribute("user connections carried now")

    def start():
        """
        Start serving (listen, add routes) and return the remote address
        text of NewProxyResp; raise
        :class:`~labrelay.errors.ProxyError` to refuse the proxy.
        """

    def close():
        """Stop serving; connections already carried run on."""

    def traffic():
        """(bytes from users, bytes to users) so far, open sinks
        included."""

    def sink_opened(sink):
        """*sink* (an :class:`ICountedSink`) now carries one user
        connection."""

    def sink_closed(sink):
        """*sink* is done; its bytes join the totals."""

    def sink_replaced(old, new):
        """The user connection *old* carried goes on through *new*: still
        one connection, counted by *new* from now on."""


class IWaitsForWork(Interface):
    """
    A party waiting for a work connection from its client's pool (a tcp
    user connection, an HTTP request): what
    :meth:`~labrelay.server.proxy_base.ProxyBase.get_work_connection`
    serves.
    """

    peer = Attribute("the user's address, for log lines")
    ended = Attribute("whether the party went away (then nothing is given)")

    def wait_for(deferred):
        """Remember *deferred*, the pending wait, until it fires."""

    def stop_waiting():
        """The party went away: cancel the pending wait, if any."""


class IWorkConnPool(Interface):
    """
    The idle work connections of one client, and the parties waiting for
    one.  A work connection offers ``alive`` and ``discard(why)`` (close it,
    it is not wanted).
    """

    idle_count = Attribute("idle work connections held now")

    def put(connection):
        """A work connection arrived: give it to a waiter or keep it (or
        discard it when the pool is full or closed)."""

    def discard(connection):
        """An idle *connection* went away: forget it."""

    def get():
        """
        A Deferred firing with a work connection, now or within the pool's
        timeout (then it fails with
        :class:`~labrelay.errors.NoWorkConnection`); asks the client for
        another.  Raises NoWorkConnection once the pool is closed.
        """

    def close():
        """Discard every idle connection and fail every waiter."""


class IAdmission(Interface):
    """
    One unauthenticated connection counted against its source address
    (:class:`~labrelay.server.guard.SourceGuard`), with a deadline.
    """

    host = Attribute("the source address it counts against")
    released = Attribute("whether it was given back")
    timeout = Attribute("seconds from admission to the deadline (0: none)")

    def release():
        """Stop counting the connection (idempotent): it authenticated, or
        it closed."""


class IAdmissionHolder(Interface):
    """
    The frp protocol of an admitted connection (a plain connection, or a
    yamux session whose streams authenticate): the sniffer hands it the
    admission, and it releases it once the peer proves the token.
    """

    def adopt_admission(admission):
        """Hold *admission* (an :class:`IAdmission`) until the peer
        authenticates."""

    def unauthenticated_timeout():
        """The admission's deadline passed: log why (the sniffer closes
        the connection)."""
