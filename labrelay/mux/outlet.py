# -*- test-case-name: tests.unit.test_yamux_session,tests.integration.test_yamux_session,tests.unit.test_stream_flood -*-
"""
The one transport a yamux session writes to, as its streams share it.

Frames go out at once, each in one write, straight to the socket when it
is idle (:func:`~labrelay.writethrough.write_now`), while the transport
takes them.  The session is the transport's streaming producer: when the
transport's buffer is full it pauses the session, and from then on

* a stream keeps further data in its own send buffer and queues itself
  here (:meth:`FrameOutlet.wait`), and every stream's producer is paused;
* control frames (window updates, ACKs, RSTs, Ping answers) are held in
  :class:`HeldControlFrames`: a peer that never reads must not make the
  session write a reply per request without bound;
* GoAway still goes out: it ends the session.

While the session handles what one read brought (:meth:`FrameOutlet.gather`
... :meth:`FrameOutlet.release`), the frames it answers with are gathered
and leave together in one write when the read is handled: a window update,
an ACK and a reply to a request cost one send (and one TLS record) instead
of three.  Nothing waits past the end of that read.

When the transport drains, the held control frames go first, then the
waiting streams in turn, then every stream's producer is resumed, starting
at another stream each round so that, when the transport fills up again
part-way, the same low stream ids do not always win and the others starve.
"""

from ..writethrough import write_now
from .frames import TYPE_GO_AWAY, TYPE_PING, TYPE_WINDOW_UPDATE, encode_header

#: control frames held before the peer counts as one that keeps sending
#: while not reading (a Ping or SYN flood)
HELD_LIMIT = 1024

#: bytes gathered during one read before they are written anyway
GATHER_LIMIT = 256 * 1024


class HeldControlFrames:
    """
    Control frames held back while the transport is paused, oldest first.
    Plain window updates of one stream are summed and Ping answers keep
    only the latest.
    """

    def __init__(self, limit: int = HELD_LIMIT):
        self.limit = limit
        self._frames = []  # (frame_type, flags, stream_id, length)

    def __len__(self) -> int:
        return len(self._frames)

    def hold(self, frame_type, flags, stream_id, length) -> bool:
        """Keep one frame; False (and every frame dropped) when that
        passes the limit."""
        frames = self._frames
        if frame_type == TYPE_WINDOW_UPDATE and flags == 0:
            for i, (t, f, sid, n) in enumerate(frames):
                if t == TYPE_WINDOW_UPDATE and f == 0 and sid == stream_id:
                    frames[i] = (t, f, sid, n + length)
                    return True
        elif frame_type == TYPE_PING:
            frames[:] = [entry for entry in frames if entry[0] != TYPE_PING]
        frames.append((frame_type, flags, stream_id, length))
        if len(frames) > self.limit:
            frames.clear()
            return False
        return True

    def take(self) -> bytes:
        """The held frames, encoded; none are held after."""
        frames, self._frames = self._frames, []
        return b"".join(encode_header(*entry) for entry in frames)


class FrameOutlet:
    """
    (See the module docstring.)

    :param on_flood: called when the held control frames pass their limit.
    :ivar transport: the session's transport, once connected.
    :ivar writable: whether a stream may send Data now (not paused, not
        closed); a plain attribute, read for every frame.
    """

    def __init__(self, on_flood):
        self.transport = None
        self.paused = False
        self.closed = False
        self.writable = True
        self._on_flood = on_flood
        self._held = HeldControlFrames()
        self._waiting = {}  # streams with data held back (an ordered set)
        self._turn = 0
        self._gathering = 0
        self._gathered = []
        self._gathered_size = 0

    def gather(self) -> None:
        """Keep the frames written from now on until :meth:`release`."""
        self._gathering += 1

    def release(self) -> None:
        """Write the frames kept since :meth:`gather`, in one write."""
        self._gathering -= 1
        if not self._gathering:
            self.flush()

    def flush(self) -> None:
        """Write what was gathered so far (the session is about to close)."""
        gathered = self._gathered
        if not gathered:
            return
        data = gathered[0] if len(gathered) == 1 else b"".join(gathered)
        gathered.clear()
        self._gathered_size = 0
        if not self.closed and self.transport is not None:
            write_now(self.transport, data)

    def write_frame(self, frame_type, flags, stream_id, length, payload=None) -> None:
        """One frame; control frames are held while paused."""
        if self.closed or self.transport is None:
            return
        if self.paused and not payload and frame_type != TYPE_GO_AWAY:
            if not self._held.hold(frame_type, flags, stream_id, length):
                self._on_flood()
            return
        header = encode_header(frame_type, flags, stream_id, length)
        frame = header + payload if payload else header
        if self._gathering and frame_type != TYPE_GO_AWAY:
            self._gathered.append(frame)
            self._gathered_size += len(frame)
            if self._gathered_size >= GATHER_LIMIT:
                self.flush()
            return
        if self._gathered:
            self.flush()  # a GoAway goes out now, behind what was gathered
        # one buffer, sent at once when the socket is idle (writethrough)
        write_now(self.transport, frame)

    def wait(self, stream) -> None:
        """*stream* has data the paused transport cannot take yet."""
        self._waiting[stream] = None

    def forget(self, stream) -> None:
        """*stream* is gone."""
        self._waiting.pop(stream, None)

    def pause(self, streams) -> None:
        """The transport is full: pause every stream's producer."""
        self.paused = True
        self.writable = False
        for stream in streams:
            stream._pause_producer()

    def resume(self, streams: list) -> None:
        """The transport drained: held frames, waiting streams, then every
        stream's producer, in a rotating order."""
        self.paused = False
        self.writable = not self.closed
        held = self._held.take()
        if held and not self.closed and self.transport is not None:
            self.flush()  # keep the order frames were written in
            write_now(self.transport, held)
        waiting = list(self._waiting)
        self._waiting.clear()
        for i, stream in enumerate(waiting):
            if self.paused or self.closed:
                for later in waiting[i:]:
                    self._waiting[later] = None
                return
            stream._flush()
        if streams:
            self._turn = (self._turn + 1) % len(streams)
            streams = streams[self._turn :] + streams[: self._turn]
        for stream in streams:
            if self.paused:
                return
            stream._maybe_resume_producer()

    def close(self) -> None:
        """The session ended: nothing more is written."""
        self._gathered.clear()
        self.closed = True
        self.writable = False
        self._waiting.clear()
