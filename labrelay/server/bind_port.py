# -*- test-case-name: tests.unit.test_admission,tests.unit.test_stream_flood -*-
"""
What runs on each connection accepted on the bind port.

Each is first admitted (:func:`admitter`: the flood caps and the
``unauthenticated_timeout`` deadline of :mod:`labrelay.server.guard`),
sniffed for TLS (:mod:`labrelay.sniff`), then :class:`FrpConnectionFactory`
makes it a yamux :class:`ServerSession` whose streams are frp connections
(``tcp_mux = true``) or itself one frp connection
(:class:`~labrelay.server.connection.ServerConnection`).

A yamux session that has authenticated (a stream logged in or joined a
pool) is closed once it has carried no control or work connection for
``session_idle_timeout`` seconds; streams that never identify themselves do
not count, nor do Pings.  A real frpc's session carries its control stream
for its whole life, so it is never idle.  A session without a control
stream whose streams join the pool of a client (a *work-only* session; frpc
never opens one) serves that one client, and a client has at most
``max_sessions_per_client`` of them (:mod:`labrelay.server.auth`): beyond
that a NewWorkConn is refused and its session closed.  (Without tcp_mux
every work connection is its own TCP connection: an idle one waits in its
client's pool, whose size is capped, and a spliced one ends with its
user.)
"""

from twisted.internet.protocol import Factory
from twisted.logger import Logger
from zope.interface import implementer

from ..interfaces import IAdmissionHolder
from ..mux.session import YamuxSession
from ..peers import describe, set_keepalive
from ..relay import set_no_delay
from .connection import ServerConnection
from .mismatch import SERVER_MUX_ON, looks_like_plain_frp, plain_refusal


def admitter(guard, refusals):
    """
    The sniffer's ``admit(address, ended)``: an
    :class:`~labrelay.server.guard.Admission` for a connection from
    *address* (making room by evicting the oldest pending connection of
    the busiest source when the server holds its total), or None to close
    it at once; *refusals* (a
    :class:`~labrelay.server.refusals.RefusalLog`) says so.
    """

    def admit(address, ended):
        host = getattr(address, "host", "") or ""
        refusal = guard.admission_refusal(host)
        if refusal is not None:
            refusals.not_admitted(refusal, host)
            return None
        evicted = guard.make_room()
        if evicted is not None:
            refusals.evicted(guard.unauthenticated + 1, evicted, host)
        return guard.admit(host, ended)

    return admit


@implementer(IAdmissionHolder)
class ServerSession(YamuxSession):
    """The server's yamux session; refuses plain frp clients clearly."""

    _log = Logger()
    _first = True
    #: counts this session as unauthenticated until a stream logs in
    admission = None
    #: a stream of this session logged in (it carries a control)
    logged_in = False
    #: the run_id whose pool this session's streams join, if it carries no
    #: control (a work-only session; see the module docstring)
    work_for = None

    def __init__(self, context, **kwargs):
        super().__init__(accept_stream=self._frp_stream, **kwargs)
        self._context = context
        self._had_stream = False
        self._working = 0  # streams that logged in or joined a pool
        self._idle_call = None
        # Every attribute is set here, in one order: one assigned later
        # makes Python give this session a dict of its own (1.3 KiB).
        self._first = True
        self.admission = None
        self.logged_in = False
        self.work_for = None
        self._unidentified = []

    def adopt_admission(self, admission) -> None:
        self.admission = admission

    def unauthenticated_timeout(self) -> None:
        """The admission's deadline passed: say why (the sniffer closes
        the connection)."""
        silent = [
            c
            for c in getattr(self, "_unidentified", ())
            if c.alive and c.first_message is None
        ]
        seconds = self.admission.timeout
        if silent:
            why = f"no frp message within {seconds}s on a stream of this yamux session"
        elif self._had_stream:
            why = (
                f"no stream of this yamux session logged in or joined a "
                f"pool within {seconds}s (unauthenticated_timeout)"
            )
        else:
            why = f"yamux session opened no stream within {seconds}s"
        self._context.refusals.deadline_passed(describe(self.transport), why)

    # Idle sessions.

    def stream_authenticated(self, login: bool) -> None:
        """A stream logged in (*login*) or joined a pool."""
        self.logged_in = self.logged_in or login
        self._working += 1
        # the session's deadline no longer covers its silent streams
        for connection in getattr(self, "_unidentified", ()):
            connection.start_first_message_timer()
        if self._idle_call is not None:
            self._idle_call.cancel()
            self._idle_call = None

    def stream_ended(self) -> None:
        """A stream that had logged in or joined a pool has ended."""
        self._working -= 1
        timeout = self._context.config.session_idle_timeout
        if (
            self._working == 0
            and timeout > 0
            and not self._closed
            and self._idle_call is None
        ):
            self._idle_call = self._context.clock.callLater(
                timeout, self._idle, timeout
            )

    def _idle(self, timeout) -> None:
        self._idle_call = None
        self._log.info(
            "{peer}: yamux session has carried no control or work"
            " connection for {seconds}s (session_idle_timeout); "
            "closing",
            peer=describe(self.transport),
            seconds=timeout,
        )
        self.close()

    def session_ended(self) -> None:
        """The session is gone: forget its timer and its client."""
        if self._idle_call is not None:
            self._idle_call.cancel()
            self._idle_call = None
        self._context.registry.forget_work_session(self)

    #: streams that have not yet said what they are (Login, NewWorkConn);
    #: a real frpc has one or two at a time, a flood of SYNs has thousands,
    #: each holding a protocol and a timer until first_message_timeout
    MAX_UNIDENTIFIED_STREAMS = 64

    def _frp_stream(self, stream):
        waiting = [
            c
            for c in getattr(self, "_unidentified", ())
            if c.alive and c.control is None and c.work_owner is None
        ]
        if len(waiting) >= self.MAX_UNIDENTIFIED_STREAMS:
            if len(waiting) == self.MAX_UNIDENTIFIED_STREAMS:
                self._log.warn(
                    "{peer}: {count} yamux streams opened without a first "
                    "message; refusing more",
                    peer=describe(self.transport),
                    count=len(waiting),
                )
            self._unidentified = waiting
            return None
        self._had_stream = True
        connection = ServerConnection(
            self._context, admission=self.admission, session=self
        )
        waiting.append(connection)
        self._unidentified = waiting
        return connection

    def connectionMade(self):
        super().connectionMade()
        set_no_delay(self.transport)
        set_keepalive(self.transport, self._context.config.tcp_keepalive)

    def dataReceived(self, data):
        if self._first and data:
            self._first = False
            if looks_like_plain_frp(data):
                self._log.warn(
                    "{peer}: {error}",
                    peer=describe(self.transport),
                    error=SERVER_MUX_ON,
                )
                self.transport.write(plain_refusal(SERVER_MUX_ON))
                self.transport.loseConnection()
                return
        super().dataReceived(data)


class FrpConnectionFactory(Factory):
    """Builds what runs on each accepted (and TLS-unwrapped) connection."""

    noisy = False  # no "Starting factory <... at 0x...>" lines

    def __init__(self, context):
        self.context = context

    def buildProtocol(self, addr):
        context = self.context
        config = context.config
        if config.tcp_mux:
            session = ServerSession(
                context,
                is_client=False,
                clock=context.clock,
                keepalive_interval=config.tcp_mux_keepalive_interval,
                budget=context.buffer_budget,
            )
            context.sessions.add(session)

            def closed(_):
                context.sessions.discard(session)
                session.session_ended()

            session.when_closed().addBoth(closed)
            return session
        return ServerConnection(context)
