# -*- test-case-name: tests.test_yamux_session -*-
"""
A yamux session (frp's ``tcp_mux``) as a Twisted protocol.

:class:`YamuxSession` sits on one TCP (or TLS) connection, parses frames with
:class:`~labrelay.mux.frames.FrameParser` and dispatches them to its
:class:`~labrelay.mux.stream.YamuxStream` objects.  It owns what is
per-session: stream ids and the open/accept handshake, the accept backlog,
keepalive pings, GoAway, the stream-open timeout and the teardown that ends
every stream.  It behaves like hashicorp/yamux v0.1.1 as frp configures it
(the ``yamux.Config`` frp builds; the frames are those of hashicorp/yamux's
``spec.md``).

Backpressure: the session registers itself as a streaming producer on its
transport.  When the transport's buffer is full it pauses every stream's
producer and streams keep further data in their own send buffers; when the
transport drains, the waiting streams are flushed in turn and their producers
resumed.  Reading never needs pausing: each stream's buffering is bounded by
its receive window, and the windows of all streams of all sessions sharing
one :class:`~labrelay.mux.budget.BufferBudget` grow beyond 256 KiB only
while they fit in it.
"""

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ..errors import LabrelayError
from ..peers import describe
from ..writethrough import write_now
from .budget import BufferBudget
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
    encode_header,
)
from .stream import YamuxStream

_GO_AWAY_NAMES = {
    GO_AWAY_NORMAL: "normal",
    GO_AWAY_PROTOCOL_ERROR: "protocol error",
    GO_AWAY_INTERNAL_ERROR: "internal error",
}


class SessionClosed(LabrelayError):
    """The session has ended (or never started); no stream can be opened."""


class GoAwayReceived(LabrelayError):
    """The peer sent GoAway(normal): it accepts no new streams."""


class StreamsExhausted(LabrelayError):
    """Every stream id of our parity has been used."""


class SessionError(LabrelayError):
    """The session ended abnormally (protocol error, timeout, peer's GoAway error)."""


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
            raise ValueError(f"max_window must be between {INITIAL_WINDOW} and {MAX_LENGTH}")
        self.is_client = is_client
        self._clock = clock
        self._accept_stream = accept_stream
        self._max_window = max_window
        self._keepalive_interval = keepalive_interval
        self._keepalive_timeout = keepalive_timeout
        self._accept_backlog = accept_backlog
        self._stream_open_timeout = stream_open_timeout
        self._stream_close_timeout = stream_close_timeout
        self._budget = budget if budget is not None else BufferBudget()
        self._parser = FrameParser(max_data_length=max_window)
        self._streams = {}
        self._next_id = 1 if is_client else 2
        self._open_timers = {}
        self._pending_accepts = 0
        self._paused = False
        self._deferred_control = []
        self._waiting = {}  # streams with data held back by a paused transport (ordered set)
        self._registered = False
        self._closed = False
        self._close_reason = None
        self._close_waiters = []
        self._remote_go_away = False
        self._local_go_away = False
        self._ping_id = 0
        self._ping_outstanding = None
        self._keepalive_call = None
        self._ping_timeout_call = None

    @property
    def streams_open(self) -> int:
        """Streams not yet fully closed, including ones awaiting accept."""
        return len(self._streams)

    @property
    def _writable(self) -> bool:
        return not self._paused and not self._closed

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
        if self._stream_open_timeout > 0:
            self._open_timers[stream_id] = self._clock.callLater(
                self._stream_open_timeout, self._open_timed_out, stream_id
            )
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
        self._write_frame(TYPE_GO_AWAY, 0, 0, code)
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
        self.transport.registerProducer(self, True)
        self._registered = True
        self._schedule_keepalive()

    def dataReceived(self, data: bytes) -> None:
        if self._closed:
            return
        try:
            frames = self._parser.feed(data)
        except FrameError as e:
            self._handle_frames(e.frames)
            self._protocol_error(str(e))
            return
        self._handle_frames(frames)

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        self._registered = False
        self._shutdown(reason.value, transport_gone=True)

    # IPushProducer: our transport's buffer

    _resume_turn = 0

    def pauseProducing(self) -> None:
        self._paused = True
        for stream in list(self._streams.values()):
            stream._pause_producer()

    def resumeProducing(self) -> None:
        self._paused = False
        self._flush_deferred_control()
        waiting = list(self._waiting)
        self._waiting.clear()
        for i, stream in enumerate(waiting):
            if self._paused or self._closed:
                for later in waiting[i:]:
                    self._waiting[later] = None
                return
            stream._flush()
        # Start each round at another stream: when the session's transport
        # fills up again part-way, the same low stream ids must not always
        # win and the others starve.
        streams = list(self._streams.values())
        if streams:
            self._resume_turn = (self._resume_turn + 1) % len(streams)
            streams = streams[self._resume_turn:] + streams[:self._resume_turn]
        for stream in streams:
            if self._paused:
                return
            stream._maybe_resume_producer()

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
                raise _Violation(f"peer opened stream {stream_id}, an id of our own parity")
            stream = self._incoming(header)
            if stream is None:
                return
        elif stream is None:
            return  # unknown or closed stream: ignore (the Data payload is already drained)
        if header.flags & FLAG_RST:
            stream._on_reset()
            return
        if header.flags & FLAG_ACK:
            call = self._open_timers.pop(stream_id, None)
            if call is not None:
                call.cancel()
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

    def _incoming(self, header):
        """A SYN for a new stream: refuse it (RST, returns None) or start accepting it."""
        stream_id = header.stream_id
        if self._local_go_away or self._accept_stream is None:
            self._send_rst(stream_id)
            return None
        if self._pending_accepts >= self._accept_backlog:
            self._log.warn(
                "yamux accept backlog of {backlog} full; refusing stream {stream_id}",
                backlog=self._accept_backlog,
                stream_id=stream_id,
            )
            self._send_rst(stream_id)
            return None
        stream = YamuxStream(self, stream_id, self._max_window)
        if header.type == TYPE_WINDOW_UPDATE:
            stream.send_window += header.length
        self._streams[stream_id] = stream
        try:
            result = self._accept_stream(stream)
        except Exception:
            self._log.failure("accept_stream raised for yamux stream {stream_id}", stream_id=stream_id)
            result = None
        if isinstance(result, Deferred):
            stream._await_accept()
            self._pending_accepts += 1
            result.addCallbacks(
                lambda protocol: self._accepted_later(stream, protocol),
                lambda failure: self._accept_failed(stream, failure),
            )
        elif result is None:
            stream._reset(Failure(ConnectionDone("stream refused")))
            return None
        else:
            self._accept(stream, result)
        return stream

    def _accepted_later(self, stream, protocol) -> None:
        if stream._end_accept():
            self._pending_accepts -= 1
        if stream._finished:
            return  # reset or session gone meanwhile: the protocol is never connected
        if protocol is None:
            stream._reset(Failure(ConnectionDone("stream refused")))
        else:
            self._accept(stream, protocol)

    def _accept_failed(self, stream, failure: Failure) -> None:
        self._log.failure(
            "accepting yamux stream {stream_id} failed", failure, stream_id=stream.stream_id
        )
        self._accepted_later(stream, None)

    def _accept(self, stream, protocol) -> None:
        stream._grant(FLAG_ACK)
        stream._attach(protocol)

    def _on_ping(self, header) -> None:
        if header.flags & FLAG_SYN:
            self._write_frame(TYPE_PING, FLAG_ACK, 0, header.length)
        elif header.flags & FLAG_ACK and header.length == self._ping_outstanding:
            self._ping_outstanding = None
            if self._ping_timeout_call is not None:
                self._ping_timeout_call.cancel()
                self._ping_timeout_call = None
            self._schedule_keepalive()

    def _on_go_away(self, code: int) -> None:
        if code == GO_AWAY_NORMAL:
            self._log.info("yamux peer sent GoAway: no new streams")
            self._remote_go_away = True
            return
        name = _GO_AWAY_NAMES.get(code, f"unexpected code {code}")
        self._log.error("yamux peer sent GoAway({code}, {name}); closing the session", code=code, name=name)
        self._shutdown(SessionError(f"peer sent GoAway({code}, {name})"))

    def _protocol_error(self, message: str) -> None:
        # "message" is a reserved key of Twisted's legacy log bridge, which
        # replaces it with () in the shared event: log the text as "error".
        self._log.error(
            "yamux protocol error from {peer}: {error}; sending GoAway and closing",
            peer=describe(self.transport) if self.transport is not None else "?",
            error=message,
        )
        self._write_frame(TYPE_GO_AWAY, 0, 0, GO_AWAY_PROTOCOL_ERROR)
        self._shutdown(SessionError(f"yamux protocol error: {message}"))

    # Keepalive and timeouts

    def _schedule_keepalive(self) -> None:
        if self._keepalive_interval > 0 and not self._closed:
            self._keepalive_call = self._clock.callLater(self._keepalive_interval, self._send_ping)

    def _send_ping(self) -> None:
        self._keepalive_call = None
        self._ping_id = (self._ping_id + 1) & MAX_LENGTH
        self._ping_outstanding = self._ping_id
        self._write_frame(TYPE_PING, FLAG_SYN, 0, self._ping_id)
        self._ping_timeout_call = self._clock.callLater(self._keepalive_timeout, self._ping_timed_out)

    def _ping_timed_out(self) -> None:
        self._ping_timeout_call = None
        self._log.error(
            "yamux keepalive timeout: no Ping ACK within {timeout}s; closing the session",
            timeout=self._keepalive_timeout,
        )
        self._shutdown(SessionError("keepalive timeout"), abort=True)

    def _open_timed_out(self, stream_id: int) -> None:
        del self._open_timers[stream_id]
        self._log.error(
            "yamux stream {stream_id} not acknowledged within {timeout}s; closing the session",
            stream_id=stream_id,
            timeout=self._stream_open_timeout,
        )
        self._shutdown(SessionError(f"stream {stream_id} open timeout"), abort=True)

    # Called by streams

    def _write_frame(self, frame_type, flags, stream_id, length, payload=None) -> None:
        if self._closed or self.transport is None:
            return
        if self._paused and not payload and frame_type != TYPE_GO_AWAY:
            self._defer_control(frame_type, flags, stream_id, length)
            return
        header = encode_header(frame_type, flags, stream_id, length)
        # one buffer, sent at once when the socket is idle (writethrough)
        write_now(self.transport, header + payload if payload else header)

    #: control frames kept while our transport is paused before the peer
    #: counts as one that sends without reading (a Ping or SYN flood)
    MAX_DEFERRED_CONTROL = 1024

    def _defer_control(self, frame_type, flags, stream_id, length) -> None:
        """
        Keep a control frame (window update, ACK, RST, Ping answer) while the
        transport is paused: a peer that never reads must not make us write
        a reply per request without bound.  Plain window updates of one
        stream are summed and Ping answers keep only the latest; the rest are
        sent, in order, when the transport resumes.
        """
        deferred = self._deferred_control
        if frame_type == TYPE_WINDOW_UPDATE and flags == 0:
            for i, (t, f, sid, n) in enumerate(deferred):
                if t == TYPE_WINDOW_UPDATE and f == 0 and sid == stream_id:
                    deferred[i] = (t, f, sid, n + length)
                    return
        elif frame_type == TYPE_PING:
            deferred[:] = [entry for entry in deferred
                           if entry[0] != TYPE_PING]
        deferred.append((frame_type, flags, stream_id, length))
        if len(deferred) > self.MAX_DEFERRED_CONTROL:
            deferred.clear()
            self._protocol_error(
                "peer keeps sending while not reading our replies")

    def _flush_deferred_control(self) -> None:
        deferred, self._deferred_control = self._deferred_control, []
        if deferred and not self._closed and self.transport is not None:
            write_now(self.transport, b"".join(
                encode_header(*entry) for entry in deferred))

    def _send_rst(self, stream_id: int) -> None:
        self._write_frame(TYPE_WINDOW_UPDATE, FLAG_RST, stream_id, 0)

    def _wait_writable(self, stream) -> None:
        self._waiting[stream] = None

    def _stream_finished(self, stream) -> None:
        if self._streams.get(stream.stream_id) is stream:
            del self._streams[stream.stream_id]
        self._waiting.pop(stream, None)
        call = self._open_timers.pop(stream.stream_id, None)
        if call is not None:
            call.cancel()
        if stream._end_accept():
            self._pending_accepts -= 1

    # Teardown

    def _shutdown(self, reason: Exception, abort: bool = False, transport_gone: bool = False) -> None:
        """End the session: timers, transport, every stream, then the waiters."""
        if self._closed:
            return
        self._closed = True
        self._close_reason = reason
        for call in (self._keepalive_call, self._ping_timeout_call, *self._open_timers.values()):
            if call is not None and call.active():
                call.cancel()
        self._keepalive_call = self._ping_timeout_call = None
        self._open_timers.clear()
        self._waiting.clear()
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
