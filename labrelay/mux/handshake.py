# -*- test-case-name: tests.unit.test_yamux_session,tests.integration.test_yamux_session -*-
"""
How the streams of a yamux session open: the SYN/ACK handshake in both
directions.  :class:`Handshakes` gives each stream we open
``stream_open_timeout`` seconds for the peer's ACK (a late ACK ends the
whole session, as hashicorp/yamux does), and answers each SYN of the
peer: it asks the session's ``accept_stream`` callback for a protocol (at
once, or through a Deferred), ACKs and connects the stream when one
comes, and refuses it with RST when the session sent GoAway, has no
callback, or already waits on ``accept_backlog`` Deferred answers.  The
:class:`~labrelay.mux.session.YamuxSession` keeps the frames and the
stream table.
"""

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure

from .errors import SessionError
from .frames import FLAG_ACK, TYPE_WINDOW_UPDATE
from .stream import YamuxStream


class Handshakes:
    """
    The streams of ``session`` still opening.

    :param session: the :class:`~labrelay.mux.session.YamuxSession`; its
        logger reports refusals and timeouts, so log lines keep the
        session's namespace.
    :param clock: an ``IReactorTime`` for the open timeouts.
    :param accept_stream: see :class:`~labrelay.mux.session.YamuxSession`.
    :param backlog: streams awaiting a Deferred answer beyond which new
        ones are refused with RST.
    :param open_timeout: seconds our SYN may wait for the peer's ACK
        before the session is closed (0 disables).
    :ivar pending: streams whose Deferred answer has not fired yet.
    """

    # One per session, as the session's own state is (see its __slots__).
    __slots__ = (
        "_session",
        "_clock",
        "_accept_stream",
        "backlog",
        "pending",
        "open_timeout",
        "_open_timers",
    )

    def __init__(self, session, clock, accept_stream, backlog: int, open_timeout):
        self._session = session
        self._clock = clock
        self._accept_stream = accept_stream
        self.backlog = backlog
        self.pending = 0
        self.open_timeout = open_timeout
        self._open_timers = {}

    # Streams we open

    def opened(self, stream_id: int) -> None:
        """We sent the SYN of ``stream_id``: its ACK is due."""
        if self.open_timeout > 0:
            self._open_timers[stream_id] = self._clock.callLater(
                self.open_timeout, self._open_timed_out, stream_id
            )

    def acknowledged(self, stream_id: int) -> None:
        """The peer sent the ACK of ``stream_id``."""
        call = self._open_timers.pop(stream_id, None)
        if call is not None:
            call.cancel()

    def _open_timed_out(self, stream_id: int) -> None:
        del self._open_timers[stream_id]
        session = self._session
        session._log.error(
            "yamux stream {stream_id} not acknowledged within {timeout}s; closing the session",
            stream_id=stream_id,
            timeout=self.open_timeout,
        )
        session._shutdown(SessionError(f"stream {stream_id} open timeout"), abort=True)

    def stop(self) -> None:
        """The session ended: no open timeout fires any more."""
        for call in self._open_timers.values():
            if call.active():
                call.cancel()
        self._open_timers.clear()

    # Streams the peer opens

    def incoming(self, header):
        """A SYN for a new stream: refuse it (RST, returns None) or start accepting it."""
        session = self._session
        stream_id = header.stream_id
        if session._local_go_away or self._accept_stream is None:
            session._send_rst(stream_id)
            return None
        if self.pending >= self.backlog:
            session._log.warn(
                "yamux accept backlog of {backlog} full; refusing stream {stream_id}",
                backlog=self.backlog,
                stream_id=stream_id,
            )
            session._send_rst(stream_id)
            return None
        stream = YamuxStream(session, stream_id, session._max_window)
        if header.type == TYPE_WINDOW_UPDATE:
            stream.send_window += header.length
        session._streams[stream_id] = stream
        try:
            result = self._accept_stream(stream)
        except Exception:
            session._log.failure(
                "accept_stream raised for yamux stream {stream_id}", stream_id=stream_id
            )
            result = None
        if isinstance(result, Deferred):
            stream._await_accept()
            self.pending += 1
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

    def stream_finished(self, stream) -> None:
        """``stream`` left the session: no ACK is awaited for it, and it
        no longer counts as pending."""
        self.acknowledged(stream.stream_id)
        self._end_accept(stream)

    def _end_accept(self, stream) -> None:
        if stream._end_accept():
            self.pending -= 1

    def _accepted_later(self, stream, protocol) -> None:
        self._end_accept(stream)
        if stream._finished:
            return  # reset or session gone meanwhile: the protocol is never connected
        if protocol is None:
            stream._reset(Failure(ConnectionDone("stream refused")))
        else:
            self._accept(stream, protocol)

    def _accept_failed(self, stream, failure: Failure) -> None:
        self._session._log.failure(
            "accepting yamux stream {stream_id} failed",
            failure,
            stream_id=stream.stream_id,
        )
        self._accepted_later(stream, None)

    def _accept(self, stream, protocol) -> None:
        stream._grant(FLAG_ACK)
        stream._attach(protocol)
