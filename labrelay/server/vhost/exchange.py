# -*- test-case-name: tests.unit.test_vhost,tests.integration.test_vhost,tests.integration.test_vhost_reuse -*-
"""
The backend side of the HTTP vhost: forwarding one HTTP request over one
work connection (:class:`HttpExchange`).

An exchange asks its route's target (the proxy) to ``open_work()``, writes
the rewritten request (:mod:`~labrelay.server.vhost.headers`) onto the
work connection and parses the response with a client-role h11
connection.  Bodies stream event by event in both directions; the two
transports are cross-registered as producers (through the read gates) for
the exchange's life, so neither side's bytes pile up in this process.  A
``101 Switching Protocols`` (or a 2xx to CONNECT) hands both connections to
a raw :class:`~labrelay.relay.Splice` (through the front connection).

A work connection whose exchange ended cleanly (request and response
both complete as h11 frames them, the request without a chunked body, the
response not framed both ways, no ``Connection: close``, no Upgrade,
nothing extra received) goes back to its proxy, which keeps it idle
(:mod:`~labrelay.server.vhost.idle`) for its next request.  Any other
ending closes the work connection; the client's pool replenishes (each
pooled connection taken asks for another).
"""

import h11
from twisted.internet.defer import CancelledError
from twisted.logger import Logger
from zope.interface import implementer

from ...errors import ProtocolError
from ...interfaces import ICountedSink
from ...relay import unregister_producer
from ..proxy_base import ReadGate
from ..worklink import WorkLink
from .exchange_state import HOLDING, Response, Stage, Work
from .headers import has_both_framings, response_headers

__all__ = ["HttpExchange", "WorkLink", "WorkUnavailable"]

#: The end of a message (h11 events are immutable: one serves every send).
_END = h11.EndOfMessage()


class WorkUnavailable(Exception):
    """No work connection for a request: *error* says why, *status* is
    the answer (502: the client is gone, 504: none came in time)."""

    def __init__(self, error, status: int):
        super().__init__(str(error))
        self.error = error
        self.status = status


@implementer(ICountedSink)
class HttpExchange:
    """
    One request of *front* (a vhost connection) forwarded over one work
    connection that *proxy* (the route's target) opens, and its response.

    It is its work connection's sink, and counts the bytes it carries.
    Its states are named in :mod:`~labrelay.server.vhost.exchange_state`.
    """

    _log = Logger()

    def __init__(
        self, proxy, front, request, *, target: bytes, headers: list, upgrade, client
    ):
        self.proxy = proxy
        self.front = front
        self.method = request.method
        self.target = target
        self.headers = headers
        self.upgrade = upgrade
        self.client = client  # (ip, port) of the user
        self.backend = h11.Connection(h11.CLIENT)
        self.work = None
        self.codec = None
        self.link = None  # the WorkLink in use
        self.stage = Stage.WAITING
        self.response = Response.AWAITED
        self.request_done = False  # the user's request was read whole
        self.bytes_a_to_b = 0  # user -> work (wire bytes)
        self.bytes_b_to_a = 0  # work -> user (wire bytes)
        self._work_gate = None
        self._work_state = Work.NONE
        self._head_timer = None
        self._work_wait = None  # open_work()'s Deferred, until fired
        # A backend that ignores Transfer-Encoding would read a chunked
        # body as further requests, and a response with both framings may
        # have been read otherwise by the backend's own side: after
        # either, the work connection carries nothing more.
        self._framing_doubt = any(
            name.lower() == b"transfer-encoding" for name, _ in headers
        )

    @property
    def peer(self) -> str:
        return self.front.peer

    @property
    def ended(self) -> bool:
        return self.stage is Stage.ENDED

    @property
    def accepts_body(self) -> bool:
        """Whether request body events can be handed to this exchange."""
        return self.stage is not Stage.WAITING

    # Life.

    def start(self) -> None:
        wait = self._work_wait = self.proxy.open_work(self.peer, self.client)
        wait.addCallbacks(self._use, self._no_work)
        if self._work_wait is not None:
            # waiting for the client's pool: the user's reads stop meanwhile
            # (an idle work connection fires at once, and reads go on)
            self.front.gate.pause("work")

    def _no_work(self, failure) -> None:
        """open_work() failed (none in time) or was cancelled (user left)."""
        self._work_wait = None
        if failure.check(CancelledError):
            return
        failure.trap(WorkUnavailable)
        self._fail(failure.value.status, str(failure.value.error))

    def _use(self, link) -> None:
        """*link* (a :class:`WorkLink`, started) carries this request."""
        self._work_wait = None
        self.link = link
        work = self.work = link.work
        self.codec = link.codec
        work.sink = self
        self.stage = Stage.FORWARDING
        self._work_state = Work.OPEN
        self.proxy.sink_opened(self)
        self._work_gate = ReadGate(work.transport)
        self.front.transport.registerProducer(self._work_gate.producer(), True)
        work.transport.registerProducer(self.front.gate.producer(), True)
        try:
            head = self.backend.send(
                h11.Request(
                    method=self.method, target=self.target, headers=self.headers
                )
            )
        except h11.LocalProtocolError as e:
            self._fail(502, f"cannot forward the request: {e}")
            return
        self._to_work(head)
        self.front.gate.resume("work")
        early = work.take_early_data()
        if early:
            self.forward(work, early)
        if not self.ended:
            self.front.pump()

    def _to_work(self, data: bytes) -> None:
        if not data or self._work_state not in HOLDING:
            return
        if self.codec is not None:
            data = self.codec.encode(data)
        self.bytes_a_to_b += len(data)
        self.work.transport.write(data)

    def _backend_open(self) -> bool:
        return self._work_state in HOLDING and self.backend.our_state is h11.SEND_BODY

    # Request events from the front.

    def request_data(self, data: bytes) -> None:
        if self._backend_open():
            self._to_work(self.backend.send(h11.Data(data=data)))

    def request_end(self) -> None:
        self.request_done = True
        if self._backend_open():
            self._to_work(self.backend.send(_END))
        if self.response is Response.AWAITED and not self.ended:
            self._head_timer = self.front.clock.callLater(
                self.front.vhost.response_timeout, self._head_timed_out
            )
        self._maybe_finish()

    # The work connection's side (its sink interface).

    def forward(self, source, data: bytes) -> None:
        if self.ended:
            return
        self.bytes_b_to_a += len(data)
        if self.codec is not None:
            try:
                data = self.codec.decode(data)
            except ProtocolError as e:
                self._backend_failed(f"undecodable payload: {e}")
                return
        if data:
            self.backend.receive_data(data)
            self._pump_backend()

    def end_of_input(self, source) -> None:
        if self._work_state is Work.OPEN:
            self._work_state = Work.INPUT_ENDED
            self._work_ended("the work connection ended")

    def connection_lost(self, source, reason) -> None:
        was_open = self._work_state is Work.OPEN
        self._let_go(Work.CLOSED)
        if was_open:
            self._work_ended("the work connection was lost")

    def _work_ended(self, why: str) -> None:
        """The backend sends no more: what it sent must be a whole
        response."""
        if self.ended:
            return
        self.backend.receive_data(b"")
        self._pump_backend()
        if self.response is not Response.COMPLETE and not self.ended:
            self._backend_failed(why)

    def _pump_backend(self) -> None:
        """Relay the response events h11 can give now; what they send to
        the user goes out in one write, at once if it ends the response."""
        front = self.front
        held = front.hold_writes()
        try:
            self._relay_response_events()
        finally:
            if held:
                front.flush_writes(at_once=self.response is Response.COMPLETE)

    def _relay_response_events(self) -> None:
        while not self.ended:
            try:
                event = self.backend.next_event()
            except h11.RemoteProtocolError as e:
                self._backend_failed(f"bad response: {e}")
                return
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            kind = type(event)
            try:
                if kind is h11.InformationalResponse:
                    switching = event.status_code == 101
                    self.front.send(
                        h11.InformationalResponse(
                            status_code=event.status_code,
                            reason=event.reason,
                            headers=response_headers(
                                event.headers.raw_items(), switching
                            ),
                        )
                    )
                    if switching:
                        self._switch()
                        return
                elif kind is h11.Response:
                    self._response_head()
                    received = event.headers.raw_items()
                    if has_both_framings(received):
                        self._framing_doubt = True
                    switching = self.backend.their_state is h11.SWITCHED_PROTOCOL
                    headers = response_headers(received)
                    if headers == received:
                        # nothing to rewrite: h11 takes the headers it
                        # parsed as they are, without validating them again
                        headers = event.headers
                    self.front.send(
                        h11.Response(
                            status_code=event.status_code,
                            reason=event.reason,
                            headers=headers,
                        )
                    )
                    if switching:
                        self._switch()
                        return
                elif kind is h11.Data:
                    self.front.send(event)  # h11 frames it anew for the user
                elif kind is h11.EndOfMessage:
                    self.front.send(_END)  # trailers are not forwarded
                    self.response = Response.COMPLETE
                    self._maybe_finish()
                    return
                else:
                    return  # ConnectionClosed after a complete response
            except h11.LocalProtocolError as e:
                self._log.warn(
                    "{peer}: proxy [{name}]: cannot relay the response: {error}",
                    peer=self.peer,
                    name=self.proxy.name,
                    error=e,
                )
                self._abort()
                return

    def _response_head(self) -> None:
        self.response = Response.STREAMING
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _switch(self) -> None:
        """The backend switched protocols: raw bytes from now on."""
        if self.front.http.our_state is not h11.SWITCHED_PROTOCOL:
            self._abort()
            return
        trailing, _ = self.backend.trailing_data
        self._end()
        self._let_go(Work.HANDED_OVER)
        self.front.switch_protocols(self, trailing)

    # Endings.

    def _head_timed_out(self) -> None:
        self._head_timer = None
        self._fail(
            504,
            "no response from the backend within "
            f"{self.front.vhost.response_timeout:g}s",
        )

    def _backend_failed(self, why: str) -> None:
        if self.response is Response.COMPLETE or self.ended:
            return
        if self.response is Response.STREAMING:
            self._log.warn(
                "{peer}: proxy [{name}]: response cut: {why}",
                peer=self.peer,
                name=self.proxy.name,
                why=why,
            )
            self._abort()
        else:
            self._fail(502, why)

    def _fail(self, status: int, why: str) -> None:
        if self.ended:
            return
        self._log.warn(
            "{peer}: proxy [{name}] {method} {target}: {status} ({why})",
            peer=self.peer,
            name=self.proxy.name,
            method=self.method.decode("latin-1"),
            target=self.target.decode("latin-1")[:200],
            status=status,
            why=why,
        )
        self._end()
        self._close_work()
        self.front.exchange_failed(self, status)

    def _abort(self) -> None:
        """Give up on a response already under way: close both sides."""
        if self.ended:
            return
        self._end()
        self._close_work()
        self.front.exchange_broken(self)

    def _maybe_finish(self) -> None:
        if self.ended or not (self.request_done and self.response is Response.COMPLETE):
            return
        reusable = self._reusable()
        gate = self._work_gate
        self._end()
        if reusable:
            if gate is not None:
                gate.resume("backpressure")  # its producer is unregistered
            self._release_work()
        else:
            self._close_work()
        self.front.exchange_finished(self)

    def _reusable(self) -> bool:
        """Whether the work connection may carry another request: both
        messages complete and framed beyond doubt (the request by a
        Content-Length or without a body, the response not both ways),
        keep-alive on both sides, no protocol switch, nothing received
        beyond the response."""
        backend = self.backend
        return (
            self._work_state is Work.OPEN
            and not self._framing_doubt
            and self.work.alive
            and self.upgrade is None
            and self.method != b"CONNECT"
            and backend.our_state is h11.DONE
            and backend.their_state is h11.DONE
            and backend.trailing_data == (b"", False)
        )

    def _release_work(self) -> None:
        """Hand the work connection back to the proxy's idle list."""
        self._let_go(Work.RELEASED)
        self.proxy.keep_idle(self.link)

    def front_lost(self) -> None:
        """The user's connection is gone."""
        if self.ended:
            return
        self._end()
        self._close_work()
        wait, self._work_wait = self._work_wait, None
        if wait is not None:
            wait.cancel()  # give up waiting for a work connection

    def _end(self) -> None:
        self.stage = Stage.ENDED
        self.front.gate.resume("work")
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        if self._work_gate is not None:
            unregister_producer(self.front.transport)
            unregister_producer(self.work.transport)
            self.front.gate.resume("backpressure")
            self._work_gate = None

    def _close_work(self) -> None:
        if self._let_go(Work.CLOSED):
            self.work.transport.loseConnection()

    def _let_go(self, state: Work) -> bool:
        """Stop holding the work connection (*state*: released, handed
        over or closed) and stop counting as an open connection of the
        proxy (a raw Splice that carries on reports the hand-over
        itself).  False if it was not held."""
        if self._work_state not in HOLDING:
            return False
        self._work_state = state
        if state is not Work.HANDED_OVER:
            self.proxy.sink_closed(self)
        return True
