# -*- test-case-name: tests.unit.test_yamux_session,tests.integration.test_yamux_session -*-
"""
A yamux session (frp's ``tcp_mux``) as a Twisted protocol.

:class:`YamuxSession` sits on one TCP (or TLS) connection, parses frames with
:class:`~labrelay.mux.frames.FrameParser` and dispatches them to its
:class:`~labrelay.mux.stream.YamuxStream` objects.  It owns what is
per-session: stream ids, GoAway and the teardown that ends every stream;
the open/accept handshake of its streams (the accept backlog, the
stream-open timeout) is :class:`~labrelay.mux.handshake.Handshakes`, and
its keepalive Pings are a :class:`~labrelay.mux.keepalive.Keepalive`.  It
behaves like hashicorp/yamux v0.1.1 as frp configures it (the
``yamux.Config`` frp builds; the frames are those of hashicorp/yamux's
``spec.md``); what it can report is in :mod:`labrelay.mux.errors`.

Backpressure: the session registers itself as a streaming producer on its
transport, and every frame goes out through its
:class:`~labrelay.mux.outlet.FrameOutlet`, which holds what a full
transport cannot take and resumes the streams fairly when it drains.
Reading never needs pausing: each stream's buffering is bounded by its
receive window, and the windows of all streams of all sessions sharing one
:class:`~labrelay.mux.budget.BufferBudget` grow beyond 256 KiB only while
they fit in it.
"""

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ..peers import describe
from .budget import BufferBudget
from .errors import GoAwayReceived, SessionClosed, SessionError, StreamsExhausted
from .frames import (
    FLAG_ACK,
    FLAG_FIN,
    FLAG_RST,
    FLAG_SYN,
    GO_AWAY_INTERNAL_ERROR,
    GO_AWAY_NORMAL,
    GO_AWAY_PROTOCOL_ERROR,
    INITIAL_WINDOW,
    MAX_LENGTH,
    TYPE_GO_AWAY,
    TYPE_PING,
    TYPE_WINDOW_UPDATE,
    FrameError,
    FrameParser,
)
from .handshake import Handshakes
from .keepalive import Keepalive
from .outlet import FrameOutlet
from .stream import YamuxStream

__all__ = [
    "GoAwayReceived",
    "SessionClosed",
    "SessionError",
    "StreamsExhausted",
    "YamuxSession",
]

_GO_AWAY_NAMES = {
    GO_AWAY_NORMAL: "normal",
    GO_AWAY_PROTOCOL_ERROR: "protocol error",
    GO_AWAY_INTERNAL_ERROR: "internal error",
}


class _Violation(Exception):
    """Internal: a frame broke the protocol; the session sends GoAway(1)."""


@implementer(IPushProducer)
class YamuxSession(Protocol):
    """
    One side of a yamux session.

    :param is_client: the client opens odd stream ids (frpc), the server even.
    :param clock: an ``IReactorTime`` for keepalives and timeouts.
    :param accept_stream: called with each stream the peer opens; returns the
        protocol to connect to it, ``None`` to refuse it (RST), or a Deferred
        firing with either (the stream then counts against ``accept_backlog``
        until it fires).  Without it every incoming stream is refused.
    :param max_window: the receive window each stream grows to (frp: 6 MiB).
    :param keepalive_interval: seconds between our Pings; 0 disables them.
    :param keepalive_timeout: seconds a Ping may wait for its ACK.
    :param accept_backlog: streams opened by the peer and not yet accepted
        beyond which new ones are refused with RST.
    :param stream_open_timeout: seconds our SYN may wait for the peer's ACK
        before the whole session is closed (0 disables).
    :param stream_close_timeout: seconds a locally closed stream waits for the
        peer's FIN before it is reset (0 disables).
    :param budget: the :class:`~labrelay.mux.budget.BufferBudget` shared by
        the process's sessions (default: one of this session's own, with no
        limit).
    """

    _log = Logger()

    # A relay holds one session per client: slots keep its state out of the
    # instance dict, which at over 29 attributes (subclasses add their own)
    # would cost 1.6 KiB per session.
    __slots__ = (
        "is_client",
        "_clock",
        "_max_window",
        "_keepalive",
        "_stream_close_timeout",
        "_budget",
        "_parser",
        "_streams",
        "_next_id",
        "_handshakes",
        "_outlet",
        "_registered",
        "_closed",
        "_close_reason",
        "_close_waiters",
        "_remote_go_away",
        "_local_go_away",
    )

    def __init__(
        self,
        *,
        is_client: bool,
        clock,
        accept_stream=None,
        max_window: int = 6 * 1024 * 1024,
        keepalive_interval: float = 30,
        keepalive_timeout: float = 10,
        accept_backlog: int = 256,
        stream_open_timeout: float = 75,
        stream_close_timeout: float = 300,
        budget=None,
    ):
        if not INITIAL_WINDOW <= max_window <= MAX_LENGTH:
            raise ValueError(
                f"max_window must be between {INITIAL_WINDOW} and {MAX_LENGTH}"
            )
        self.is_client = is_client
        self._clock = clock
        self._max_window = max_window
        self._keepalive = Keepalive(
            clock,
            keepalive_interval,
            keepalive_timeout,
            self._send_ping,
            self._ping_timed_out,
        )
        self._stream_close_timeout = stream_close_timeout
        self._budget = budget if budget is not None else BufferBudget()
        self._parser = FrameParser(max_data_length=max_window)
        self._streams = {}
        self._next_id = 1 if is_client else 2
        self._handshakes = Handshakes(
            self, clock, accept_stream, accept_backlog, stream_open_timeout
        )
        self._outlet = FrameOutlet(on_flood=self._flooded)
        self._registered = False
        self._closed = False
        self._close_reason = None
        self._close_waiters = []
        self._remote_go_away = False
        self._local_go_away = False

    @property
    def streams_open(self) -> int:
        """Streams not yet fully closed, including ones awaiting accept."""
        return len(self._streams)

    # Public API

    def open_stream(self, protocol) -> YamuxStream:
        """
        Open a stream (SYN) and connect ``protocol`` to it synchronously.

        Data written at once is sent without waiting for the peer's ACK.
        Raises :class:`SessionClosed`, :class:`GoAwayReceived` or
        :class:`StreamsExhausted`.
        """
        if self._closed or self.transport is None:
            raise SessionClosed("the yamux session is closed")
        if self._remote_go_away:
            raise GoAwayReceived("the peer sent GoAway and accepts no new streams")
        stream_id = self._next_id
        if stream_id > MAX_LENGTH:
            raise StreamsExhausted("yamux stream ids exhausted")
        self._next_id += 2
        stream = YamuxStream(self, stream_id, self._max_window)
        self._streams[stream_id] = stream
        stream._grant(FLAG_SYN)
        self._handshakes.opened(stream_id)
        stream._attach(protocol)
        return stream

    def go_away(self, code: int = GO_AWAY_NORMAL) -> None:
        """
        Send GoAway(code).  Normal (0): refuse new streams from now on, keep
        the open ones.  Any other code also ends the session.
        """
        if self._closed:
            return
        self._local_go_away = True
        self._outlet.write_frame(TYPE_GO_AWAY, 0, 0, code)
        if code != GO_AWAY_NORMAL:
            self._shutdown(SessionError(f"sent GoAway({code})"))

    def close(self) -> None:
        """End every stream and lose the transport (after its buffered bytes)."""
        self._shutdown(ConnectionDone("yamux session closed locally"))

    def when_closed(self) -> Deferred:
        """
        A Deferred that fires when the session ends, with the *exception
        instance* (not a Failure) saying why: ConnectionDone for close() or a
        clean end of the connection, ConnectionLost or another transport error,
        or :class:`SessionError` (protocol error, keepalive or open timeout,
        GoAway with an error code).  It never errbacks.
        """
        d = Deferred()
        if self._closed:
            d.callback(self._close_reason)
        else:
            self._close_waiters.append(d)
        return d

    # IProtocol

    def connectionMade(self) -> None:
        self._outlet.transport = self.transport
        self.transport.registerProducer(self, True)
        self._registered = True
        if not self._closed:
            self._keepalive.schedule()

    def dataReceived(self, data: bytes) -> None:
        if self._closed:
            return
        outlet = self._outlet
        outlet.gather()
        try:
            try:
                frames = self._parser.feed(data)
            except FrameError as e:
                self._handle_frames(e.frames)
                self._protocol_error(str(e))
                return
            self._handle_frames(frames)
        finally:
            outlet.release()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._registered = False
        self._shutdown(reason.value, transport_gone=True)

    # IPushProducer: our transport's buffer (see labrelay.mux.outlet)

    def pauseProducing(self) -> None:
        self._outlet.pause(list(self._streams.values()))

    def resumeProducing(self) -> None:
        self._outlet.resume(list(self._streams.values()))

    def stopProducing(self) -> None:
        """The transport is going away; connectionLost follows."""

    # Incoming frames

    def _handle_frames(self, frames) -> None:
        for frame in frames:
            if self._closed:
                return
            header = frame.header
            try:
                if header.type == TYPE_PING:
                    self._on_ping(header)
                elif header.type == TYPE_GO_AWAY:
                    self._on_go_away(header.length)
                else:
                    self._on_stream_frame(header, frame.payload)
            except _Violation as e:
                self._protocol_error(str(e))
                return

    def _on_stream_frame(self, header, payload: bytes) -> None:
        stream_id = header.stream_id
        if stream_id == 0:
            raise _Violation(f"{header.describe()} on stream 0")
        stream = self._streams.get(stream_id)
        if header.flags & FLAG_SYN:
            if stream is not None:
                raise _Violation(f"duplicate SYN for stream {stream_id}")
            if (stream_id % 2 == 1) == self.is_client:
                raise _Violation(
                    f"peer opened stream {stream_id}, an id of our own parity"
                )
            stream = self._handshakes.incoming(header)
            if stream is None:
                return
        elif stream is None:
            return  # unknown or closed stream: ignore (the Data payload is already drained)
        if header.flags & FLAG_RST:
            stream._on_reset()
            return
        if header.flags & FLAG_ACK:
            self._handshakes.acknowledged(stream_id)
        if header.type == TYPE_WINDOW_UPDATE:
            if header.length and not header.flags & FLAG_SYN:
                stream._on_window_update(header.length)
        elif payload:
            if len(payload) > stream.recv_window:
                raise _Violation(
                    f"stream {stream_id} sent {len(payload)} bytes with a receive "
                    f"window of {stream.recv_window}"
                )
            stream._on_data(payload)
        if header.flags & FLAG_FIN:
            stream._on_remote_fin()

    def _on_ping(self, header) -> None:
        if header.flags & FLAG_SYN:
            self._outlet.write_frame(TYPE_PING, FLAG_ACK, 0, header.length)
        elif header.flags & FLAG_ACK:
            self._keepalive.answered(header.length)

    def _on_go_away(self, code: int) -> None:
        if code == GO_AWAY_NORMAL:
            self._log.info("yamux peer sent GoAway: no new streams")
            self._remote_go_away = True
            return
        name = _GO_AWAY_NAMES.get(code, f"unexpected code {code}")
        self._log.error(
            "yamux peer sent GoAway({code}, {name}); closing the session",
            code=code,
            name=name,
        )
        self._shutdown(SessionError(f"peer sent GoAway({code}, {name})"))

    def _protocol_error(self, message: str) -> None:
        # "message" is a reserved key of Twisted's legacy log bridge, which
        # replaces it with () in the shared event: log the text as "error".
        self._log.error(
            "yamux protocol error from {peer}: {error}; sending GoAway and closing",
            peer=describe(self.transport) if self.transport is not None else "?",
            error=message,
        )
        self._outlet.write_frame(TYPE_GO_AWAY, 0, 0, GO_AWAY_PROTOCOL_ERROR)
        self._shutdown(SessionError(f"yamux protocol error: {message}"))

    def _flooded(self) -> None:
        """The outlet held too many control frames for a peer that does
        not read."""
        self._protocol_error("peer keeps sending while not reading our replies")

    # Keepalive and timeouts

    def _send_ping(self, ping_id: int) -> None:
        self._outlet.write_frame(TYPE_PING, FLAG_SYN, 0, ping_id)

    def _ping_timed_out(self) -> None:
        self._log.error(
            "yamux keepalive timeout: no Ping ACK within {timeout}s; closing the session",
            timeout=self._keepalive.timeout,
        )
        self._shutdown(SessionError("keepalive timeout"), abort=True)

    # Called by streams

    def _send_rst(self, stream_id: int) -> None:
        self._outlet.write_frame(TYPE_WINDOW_UPDATE, FLAG_RST, stream_id, 0)

    def _stream_finished(self, stream) -> None:
        if self._streams.get(stream.stream_id) is stream:
            del self._streams[stream.stream_id]
        self._outlet.forget(stream)
        self._handshakes.stream_finished(stream)

    # Teardown

    def _shutdown(
        self, reason: Exception, abort: bool = False, transport_gone: bool = False
    ) -> None:
        """End the session: timers, transport, every stream, then the waiters."""
        if self._closed:
            return
        self._closed = True
        self._close_reason = reason
        self._keepalive.stop()
        self._handshakes.stop()
        if not abort and not transport_gone:
            self._outlet.flush()
        self._outlet.close()
        transport = self.transport
        if transport is not None and not transport_gone:
            if self._registered:
                # A paused producer would keep loseConnection from completing.
                self._registered = False
                transport.unregisterProducer()
            if abort:
                transport.abortConnection()
            else:
                transport.loseConnection()
        ended = ConnectionLost(f"yamux session ended: {reason}")
        ended.__cause__ = reason  # for whoever needs the real reason (TLS)
        lost = Failure(ended)
        for stream in list(self._streams.values()):
            stream._on_session_end(lost)
        self._streams.clear()
        waiters, self._close_waiters = self._close_waiters, []
        for d in waiters:
            d.callback(reason)
