# -*- test-case-name: tests.integration.test_tunnel,tests.unit.test_vhost,tests.integration.test_vhost -*-
"""
What every proxy type on the server shares: :class:`ProxyBase` (its owner,
its counters, finding a live work connection for a user),
:func:`join_user_to_work` (a started work connection, then a raw splice;
:mod:`~labrelay.server.worklink` starts it) and
:class:`ReadGate` (pausing one transport's reads for several independent
reasons, as the HTTP vhost needs).
"""

from twisted.internet.defer import CancelledError
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from zope.interface import implementer

from ..errors import NoWorkConnection
from ..interfaces import IProxy, IWaitsForWork
from ..kernel_splice import make_splice
from ..logs import kv_fields
from ..peers import host_port
from .worklink import start_work_link


def join_user_to_work(proxy, user, work, *, dst=("", 0)):
    """
    Start *work* for *user* (a RelayedProtocol, :func:`start_work_link`)
    and splice the two (:func:`~labrelay.kernel_splice.make_splice`: in
    the kernel when both are plain TCP and nothing changes the bytes).  Shared by every proxy type that relays raw bytes.
    """
    link = start_work_link(
        proxy, work, src=host_port(user.transport.getPeer()), dst=dst
    )
    splice = make_splice(
        user,
        work,
        b_codec=link.codec,
        on_close=proxy.sink_closed,
        description=f"proxy [{proxy.name}] {user.peer}",
    )
    proxy.sink_opened(splice)
    splice.start(a_pending=user.take_early_data(), b_pending=work.take_early_data())
    return splice


def user_close_fields(proxy, peer: str, splice, seconds: float) -> dict:
    """The ``key=value`` fields of the "user connection close" line of a
    raw-bytes user of *proxy* (tcp, https, tcpmux): who, the bytes each way
    as *splice* carried them (none if it never started) and *seconds*."""
    return kv_fields(
        proxy=proxy.name,
        run_id=proxy.control.run_id,
        user_addr=peer,
        bytes_in=splice.bytes_a_to_b if splice is not None else 0,
        bytes_out=splice.bytes_b_to_a if splice is not None else 0,
        duration_ms=round(seconds * 1000),
    )


@implementer(IWaitsForWork)
class WaitsForWork:
    """
    What :meth:`ProxyBase.get_work_connection` expects of a user (a tcp
    user connection, an HTTP request's wait in
    :meth:`~labrelay.server.vhost.proxy.HttpProxy.open_work`): it remembers the pending wait so
    that a user who leaves can cancel it.
    """

    _waiting = None

    def wait_for(self, deferred) -> None:
        self._waiting = deferred

        def done(result):
            self._waiting = None
            return result

        deferred.addBoth(done)

    def stop_waiting(self) -> None:
        """The user went away: give up the pending wait, if any."""
        if self._waiting is not None:
            self._waiting.cancel()


@implementer(IProxy)
class ProxyBase:
    """What every proxy type shares: its owner, its counters, its work conns."""

    _log = Logger()
    type = ""

    def __init__(self, context, control, message):
        self.context = context  # labrelay.server.context.ServerContext
        self.control = control
        self.message = message
        self.name = message.proxy_name
        self.use_encryption = message.use_encryption
        self.use_compression = message.use_compression
        self.connections = set()
        self.bytes_in = 0  # from users
        self.bytes_out = 0  # to users
        self.total_connections = 0
        self.active_splices = 0
        self._open = set()  # open counted sinks (splices, HTTP exchanges)

    def get_work_connection(self, user, on_ready) -> None:
        """
        Find a live work connection for *user* and call ``on_ready(work)``;
        a connection that died while pooled is skipped (up to pool_count + 1
        tries, as frp); no connection in time closes *user*.
        """
        attempts = [max(self.control.login.pool_count, 0) + 1]

        def try_once():
            try:
                d = self.control.pool.get()
            except NoWorkConnection as e:
                failed(e)
                return
            user.wait_for(d)
            d.addCallbacks(got, errored)

        def got(work):
            if user.ended:
                if work.alive:
                    self.control.pool.put(work)
                return
            if not work.alive:
                attempts[0] -= 1
                if attempts[0] > 0:
                    try_once()
                else:
                    failed(NoWorkConnection("every work connection was dead"))
                return
            on_ready(work)

        def errored(failure):
            if failure.check(CancelledError):
                return None  # the user went away while waiting
            if failure.check(NoWorkConnection):
                failed(failure.value)
                return None
            return failure

        def failed(error):
            if user.ended:
                return
            self._log.warn(
                "proxy [{name}] {peer}: {error}; closing the user connection",
                name=self.name,
                peer=user.peer,
                error=error,
            )
            self.user_refused(user, error)

        try_once()

    def user_refused(self, user, error) -> None:
        user.transport.abortConnection()

    # Traffic: each open counted sink (a raw Splice, an HTTP exchange)
    # counts its own bytes; the proxy reads them when asked.

    def sink_opened(self, sink) -> None:
        """*sink* now carries one user connection."""
        self.total_connections += 1
        self.active_splices += 1
        self._open.add(sink)

    def sink_closed(self, sink) -> None:
        """*sink* is done: its bytes join the totals."""
        self.active_splices -= 1
        self._open.discard(sink)
        self._fold(sink)

    def sink_replaced(self, old, new) -> None:
        """The user connection *old* carried goes on through *new* (an HTTP
        exchange that switched protocols, now a raw Splice): still one
        connection, *old*'s bytes join the totals, *new*'s are read from
        now on."""
        self._open.discard(old)
        self._fold(old)
        self._open.add(new)

    def _fold(self, sink) -> None:
        self.bytes_in += sink.bytes_a_to_b
        self.bytes_out += sink.bytes_b_to_a

    def traffic(self) -> tuple:
        """
        (bytes in, bytes out) so far, open connections included: their
        sinks' own counters are read now, so nothing is added on the relay
        path (:mod:`labrelay.server.stats` samples this).
        """
        total_in, total_out = self.bytes_in, self.bytes_out
        for sink in self._open:
            total_in += sink.bytes_a_to_b
            total_out += sink.bytes_b_to_a
        return total_in, total_out


class ReadGate:
    """
    Pauses *transport*'s reads while at least one reason holds.

    A transport has one pause switch, but an HTTP connection has several
    reasons to stop reading (no work connection yet, the peer's write buffer
    is full, a pipelined request waits for the current response).  Each
    reason is paused and resumed on its own; reads resume when none is left.
    """

    def __init__(self, transport):
        self._transport = transport
        self._reasons = set()

    @property
    def paused(self) -> bool:
        return bool(self._reasons)

    def pause(self, reason: str) -> None:
        if not self._reasons:
            self._transport.pauseProducing()
        self._reasons.add(reason)

    def resume(self, reason: str) -> None:
        if reason in self._reasons:
            self._reasons.discard(reason)
            if not self._reasons:
                self._transport.resumeProducing()

    def producer(self, reason: str = "backpressure") -> "GateProducer":
        """A streaming producer (for another transport's registerProducer)
        that pauses this gate for *reason*."""
        return GateProducer(self, reason)


@implementer(IPushProducer)
class GateProducer:
    """The push-producer face of one :class:`ReadGate` reason."""

    def __init__(self, gate, reason):
        self._gate = gate
        self._reason = reason

    def pauseProducing(self):
        self._gate.pause(self._reason)

    def resumeProducing(self):
        self._gate.resume(self._reason)

    def stopProducing(self):
        """The consumer is gone; its owner's connectionLost does the rest."""
