# -*- test-case-name: tests.unit.test_yamux_session,tests.integration.test_yamux_session -*-
"""
One yamux stream, seen by its protocol as an ordinary TCP-like transport.

:class:`YamuxStream` owns everything per stream: the send window, the send
buffer (:mod:`~labrelay.mux.sendbuffer`: bytes the window or a paused
session transport holds back), the receive window
(:mod:`~labrelay.mux.window`), the receive buffer (bytes held while the
protocol side is paused, or before an accept completes), the FIN/RST close
state and the registered producer (:mod:`~labrelay.mux.producer`).  It
sends frames through its session's :class:`~labrelay.mux.outlet.FrameOutlet`.
The states it moves through are named in :mod:`labrelay.mux.stream_state`.

Flow control, in short:

* Sending: a Data frame never exceeds ``send_window``; the rest waits in the
  send buffer, and while it does a streaming producer is paused.  A FIN
  waits behind buffered data.
* Receiving: credit goes back to the peer (a WindowUpdate) only for bytes
  that have left this stream onward: delivered to the protocol while it
  reads, i.e. not while its consumer (the transport it writes to) has
  paused it; bytes delivered by the call that paused it are credited when
  it resumes, that is once that transport's buffer has drained.  A paused
  stream therefore holds at most one window and then holds the peer back,
  without touching other streams.  How large the window is (it grows only
  as data flows, within the process-wide
  :class:`~labrelay.mux.budget.BufferBudget`) is the receive window's.

Close, in short: ``loseConnection`` sends FIN after the buffered data, drops
any further input, and ends with ``connectionLost(ConnectionDone)`` once the
peer's FIN came (or after the close timeout, with a RST).  A FIN from the
peer gives an ``IHalfCloseableProtocol`` ``readConnectionLost()``; any other
protocol gets ``connectionLost(ConnectionDone)`` at once and our FIN follows
the data still buffered.  ``abortConnection``, a protocol callback raising,
and the close timeout send RST so that the peer never waits forever.
``connectionLost`` is called exactly once and synchronously.
"""

from twisted.internet.error import ConnectionAborted, ConnectionDone, ConnectionLost
from twisted.internet.interfaces import (
    IConsumer,
    IHalfCloseableProtocol,
    IPushProducer,
    ITCPTransport,
)
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from .frames import FLAG_FIN, INITIAL_WINDOW, TYPE_DATA, TYPE_WINDOW_UPDATE
from .producer import RegisteredProducer
from .sendbuffer import SendBuffer
from .socketless import SocketlessTransport
from .stream_state import Handshake, Receiving, Sending
from .window import ReceiveWindow

#: Largest Data payload we put in one frame: large enough that the 12-byte
#: header is noise, small enough that streams sharing a session interleave.
MAX_DATA_FRAME = 64 * 1024


# Aliases for the members the data path tests on every frame: attribute
# access on an Enum class costs ~70 ns in CPython 3.11, a global ~5 ns.
_SENDING = Sending.OPEN
_FIN_QUEUED = Sending.FIN_QUEUED
_FIN_SENT = Sending.FIN_SENT
_RECEIVING = Receiving.OPEN
_FIN_RECEIVED = Receiving.FIN_RECEIVED
_FIN_DELIVERED = Receiving.FIN_DELIVERED


@implementer(ITCPTransport, IConsumer, IPushProducer)
class YamuxStream(SocketlessTransport):
    """
    The transport of one stream's protocol (see the module docstring; the
    socket-level methods are :class:`~labrelay.mux.socketless.SocketlessTransport`'s).

    :ivar stream_id: the yamux stream id (odd: opened by the client side).
    :ivar send_window: bytes we may still send before the peer grants more.
    """

    _log = Logger()

    def __init__(self, session, stream_id: int, max_window: int):
        self.stream_id = stream_id
        self.protocol = None
        self.connected = True
        self.disconnecting = False
        self.send_window = INITIAL_WINDOW
        self._window = ReceiveWindow(session._budget, max_window)
        self._session = session
        self._outlet = session._outlet
        self._out = SendBuffer()
        self._in = []  # payloads not yet delivered (a list: see sendbuffer)
        self._in_size = 0
        self._reading_paused = False  # the protocol side paused us
        self._delivering = False  # inside _deliver (no re-entry)
        self._handshake = Handshake.UNATTACHED
        self._sending = _SENDING
        self._receiving = _RECEIVING
        self._discard_input = False  # loseConnection: input is dropped
        self._finished = False  # gone from the session
        self._protocol_gone = False  # connectionLost was delivered
        self._producer = RegisteredProducer(session._clock, lambda: not self._out.size)
        self._close_timer = None
        self._recharge()

    def __repr__(self) -> str:
        return f"<YamuxStream {self.stream_id}>"

    @property
    def recv_window(self) -> int:
        """Bytes the peer may still send before we grant more."""
        return self._window.remaining

    @property
    def send_buffered(self) -> int:
        """Bytes written by the protocol and not yet sent (window or pause)."""
        return self._out.size

    @property
    def receive_buffered(self) -> int:
        """Bytes received and not yet delivered to the protocol."""
        return self._in_size

    # ITransport / ITCPTransport

    def write(self, data) -> None:
        """Queue ``data`` and send as much as the window allows."""
        if self._sending is not _SENDING or self._finished or not data:
            return
        data = bytes(data)
        self._out.append(data)
        self._flush()

    def loseConnection(self) -> None:
        """Send FIN after buffered data; ``connectionLost`` after the peer's FIN."""
        if self._finished or self._discard_input:
            return
        self.disconnecting = True
        self._discard_input = True
        self._in.clear()
        self._in_size = 0
        self._recharge()
        if self._receiving is _RECEIVING:
            # Keep crediting the peer so that it can reach its own FIN.
            self._grant()
        self._request_fin(start_close_timer=True)
        self._maybe_done()

    def loseWriteConnection(self) -> None:
        """Half-close: send FIN after buffered data and keep reading."""
        if self._finished or self._sending is not _SENDING:
            return
        self._request_fin(start_close_timer=False)

    def abortConnection(self) -> None:
        """Reset the stream now: RST to the peer, ``connectionLost(ConnectionAborted)``."""
        if self._finished:
            return
        self._reset(Failure(ConnectionAborted()))

    # IConsumer

    def registerProducer(self, producer, streaming) -> None:
        """Twisted semantics; a stream already closed stops the producer at once."""
        registered = self._producer.producer
        if registered is not None:
            raise RuntimeError(
                f"cannot register producer {producer!r}: "
                f"{registered!r} is already registered on {self!r}"
            )
        if self._protocol_gone:
            producer.stopProducing()
            return
        self._producer.register(producer, streaming)
        if streaming and (self._out.size or not self._outlet.writable):
            self._producer.pause()

    def unregisterProducer(self) -> None:
        self._producer.unregister()

    # IPushProducer: the protocol side controls delivery to itself

    def pauseProducing(self) -> None:
        """Stop delivering data; buffer up to the window and grant no credit."""
        self._reading_paused = True

    def resumeProducing(self) -> None:
        """Deliver what was buffered, then grant credit again."""
        self._reading_paused = False
        self._deliver()

    def stopProducing(self) -> None:
        self.loseConnection()

    # Called by the session

    def _await_accept(self) -> None:
        """The session's accept callback answered with a Deferred."""
        self._handshake = Handshake.ACCEPTING

    def _end_accept(self) -> bool:
        """The accept Deferred fired or the stream ended: was it pending?"""
        if self._handshake is not Handshake.ACCEPTING:
            return False
        self._handshake = Handshake.UNATTACHED
        return True

    def _attach(self, protocol) -> None:
        """Connect ``protocol`` to this stream and hand it anything buffered."""
        self._handshake = Handshake.ATTACHED
        self.protocol = protocol
        if self._call(protocol.makeConnection, self):
            self._deliver()

    def _on_window_update(self, delta: int) -> None:
        self.send_window += delta
        self._flush()

    def _on_data(self, payload: bytes) -> None:
        """Account for and deliver (or buffer) one Data payload; the session checked the window."""
        if self._finished:
            return
        self._window.remaining -= len(payload)
        if self._discard_input:
            self._recharge()
            self._grant()
            return
        if (
            self.protocol is None
            or self._reading_paused
            or self._delivering
            or self._in
            or self._receiving is not _RECEIVING
        ):
            self._in.append(payload)
            self._in_size += len(payload)
            return
        if self._call(self.protocol.dataReceived, payload):
            self._recharge()
            if not self._reading_paused:
                # Credit only bytes that did not fill the consumer up.
                self._grant()

    def _on_remote_fin(self) -> None:
        if self._finished or self._receiving is not _RECEIVING:
            return
        self._receiving = _FIN_RECEIVED
        self._deliver()

    def _on_reset(self) -> None:
        if not self._finished:
            self._finish(
                Failure(
                    ConnectionLost(f"yamux stream {self.stream_id} reset by the peer")
                )
            )

    def _on_session_end(self, reason: Failure) -> None:
        self._finish(reason)

    def _flush(self) -> None:
        """Send buffered data within the window, then a pending FIN."""
        if self._finished:
            return
        outlet = self._outlet
        while self._out.size and self.send_window > 0:
            if not outlet.writable:
                outlet.wait(self)
                break
            n = min(self.send_window, self._out.size, MAX_DATA_FRAME)
            payload = self._out.take(n)
            self.send_window -= n
            outlet.write_frame(TYPE_DATA, 0, self.stream_id, n, payload)
        if self._finished:
            return
        if self._out.size:
            self._pause_producer()
        elif self._sending is not _SENDING:
            if self._sending is _FIN_QUEUED:
                self._send_fin()
        else:
            self._maybe_resume_producer()

    def _pause_producer(self) -> None:
        self._producer.pause()

    def _maybe_resume_producer(self) -> None:
        if not self._out.size and self._outlet.writable:
            self._producer.resume()

    # Internals

    def _recharge(self) -> None:
        """Charge the budget with what the peer may make us hold now."""
        self._window.recharge(self._in_size, self._finished)

    def _grant(self, flags: int = 0) -> None:
        """
        Send credit for consumed bytes (:mod:`labrelay.mux.window`): none
        after the peer's FIN; a SYN or ACK goes out with whatever is owed
        (the window grows only as data flows).
        """
        if self._finished:
            return
        if not flags and self._receiving is not _RECEIVING:
            return
        delta = self._window.credit(
            self._in_size, grow=not self._discard_input, forced=bool(flags)
        )
        if delta is not None:
            self._outlet.write_frame(TYPE_WINDOW_UPDATE, flags, self.stream_id, delta)

    def _deliver(self) -> None:
        """Hand buffered data, then a pending FIN, to the protocol while it reads."""
        if self._delivering or self.protocol is None:
            return
        self._delivering = True
        try:
            while self._in and not self._reading_paused and not self._finished:
                chunk = self._in.pop(0)
                self._in_size -= len(chunk)
                if not self._call(self.protocol.dataReceived, chunk):
                    return
        finally:
            self._delivering = False
            self._recharge()
        if self._finished or self._reading_paused or self._in:
            return
        self._grant()
        if self._receiving is _FIN_RECEIVED:
            self._deliver_fin()

    def _deliver_fin(self) -> None:
        self._receiving = _FIN_DELIVERED
        if self._discard_input or self._protocol_gone:
            self._maybe_done()
            return
        half_closeable = IHalfCloseableProtocol(self.protocol, None)
        if half_closeable is not None:
            if self._call(half_closeable.readConnectionLost):
                self._maybe_done()
            return
        # Not half-closeable: the stream ends for the protocol now; our FIN
        # still follows whatever it had written.
        self._lose_protocol(Failure(ConnectionDone("yamux stream closed by the peer")))
        self.disconnecting = True
        self._discard_input = True
        self._request_fin(start_close_timer=True)

    def _request_fin(self, start_close_timer: bool) -> None:
        if self._finished:
            # A protocol callback may have ended the whole session (and so
            # this stream) while we were delivering the peer's FIN.
            return
        if self._sending is _SENDING:
            self._sending = _FIN_QUEUED
        timeout = self._session._stream_close_timeout
        if start_close_timer and self._close_timer is None and timeout > 0:
            self._close_timer = self._session._clock.callLater(
                timeout, self._close_timed_out
            )
        self._flush()

    def _send_fin(self) -> None:
        self._sending = _FIN_SENT
        self._outlet.write_frame(TYPE_WINDOW_UPDATE, FLAG_FIN, self.stream_id, 0)
        if not self._discard_input and not self._protocol_gone:
            half_closeable = IHalfCloseableProtocol(self.protocol, None)
            if half_closeable is not None and not self._call(
                half_closeable.writeConnectionLost
            ):
                return
        self._maybe_done()

    def _maybe_done(self) -> None:
        """Both FINs exchanged (and the peer's seen or moot): the stream is over."""
        if self._finished or not (
            self._sending is _FIN_SENT and self._receiving is not _RECEIVING
        ):
            return
        if (
            self._receiving is _FIN_DELIVERED
            or self._discard_input
            or self._protocol_gone
        ):
            self._finish(Failure(ConnectionDone("yamux stream closed")))

    def _close_timed_out(self) -> None:
        self._close_timer = None
        self._log.warn(
            "yamux stream {stream_id} not closed by the peer within {timeout}s; resetting it",
            stream_id=self.stream_id,
            timeout=self._session._stream_close_timeout,
        )
        self._reset(Failure(ConnectionDone("yamux stream close timeout")))

    def _reset(self, reason: Failure) -> None:
        """Send RST and end the stream with ``reason``."""
        self._session._send_rst(self.stream_id)
        self._finish(reason)

    def _call(self, method, *args) -> bool:
        """Run a protocol callback; if it raises, reset the stream and return False."""
        try:
            method(*args)
        except Exception:
            reason = Failure()
            self._log.failure(
                "protocol of yamux stream {stream_id} raised; resetting the stream",
                reason,
                stream_id=self.stream_id,
            )
            if not self._finished:
                self._reset(reason)
            return False
        return not self._finished

    def _finish(self, reason: Failure) -> None:
        """Leave the session and tell the protocol, once."""
        if self._finished:
            return
        self._finished = True
        self.disconnecting = True
        self.connected = False
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
        self._out.clear()
        self._in.clear()
        self._in_size = 0
        self._recharge()
        self._session._stream_finished(self)
        self._lose_protocol(reason)

    def _lose_protocol(self, reason: Failure) -> None:
        if self._protocol_gone:
            return
        self._protocol_gone = True
        if self._sending is _SENDING:
            self._sending = _FIN_QUEUED
        producer = self._producer.take()
        if producer is not None:
            try:
                producer.stopProducing()
            except Exception:
                self._log.failure(
                    "producer of yamux stream {stream_id} raised",
                    stream_id=self.stream_id,
                )
        if self.protocol is not None:
            try:
                self.protocol.connectionLost(reason)
            except Exception:
                self._log.failure(
                    "connectionLost of yamux stream {stream_id} raised",
                    stream_id=self.stream_id,
                )
