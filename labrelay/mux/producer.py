# -*- test-case-name: tests.unit.test_yamux_session,tests.integration.test_yamux_session -*-
"""
The producer registered on a yamux stream (the stream is an
``IConsumer``), and how it is driven.

A streaming producer is paused while the stream's send buffer holds bytes
(the peer's window is exhausted, or the session's transport is full) and
resumed once it drains; it is paused again even when paused already, as
Twisted's transports do on every write while full, so that whoever
resumed it behind the stream's back (``Splice.start`` resumes both sides)
cannot make the stream buffer one read after another without bound.  A
pull producer is asked for more once each time the buffer drains, on the
next reactor turn: never from inside its own ``write()``.
"""

from .stream_state import ProducerMode


class RegisteredProducer:
    """
    :param clock: an ``IReactorTime`` (for the pull producer's turn).
    :param drained: called with no arguments: whether the stream's send
        buffer is empty.
    :ivar producer: the producer, or None.
    :ivar mode: a :class:`~labrelay.mux.stream_state.ProducerMode`.
    """

    def __init__(self, clock, drained):
        self._clock = clock
        self._drained = drained
        self.producer = None
        self.mode = ProducerMode.PULL
        self._pull_call = None

    def register(self, producer, streaming: bool) -> None:
        """Drive *producer*: a pull producer is asked for data at once."""
        self.producer = producer
        if streaming:
            self.mode = ProducerMode.STREAMING
        else:
            self.mode = ProducerMode.PULL
            producer.resumeProducing()

    def unregister(self) -> None:
        self.producer = None
        self._cancel_pull()

    def take(self):
        """Forget the producer and return it (None if there is none)."""
        producer, self.producer = self.producer, None
        self._cancel_pull()
        return producer

    def pause(self) -> None:
        """The send buffer holds bytes: pause a streaming producer."""
        if self.producer is not None and self.mode is not ProducerMode.PULL:
            self.mode = ProducerMode.PAUSED
            self.producer.pauseProducing()

    def resume(self) -> None:
        """The send buffer drained and the session may write: resume a
        paused producer, or ask a pull producer on the next turn."""
        if self.producer is None:
            return
        mode = self.mode
        if mode is not ProducerMode.PULL:
            if mode is ProducerMode.PAUSED:
                self.mode = ProducerMode.STREAMING
                self.producer.resumeProducing()
        elif self._pull_call is None:
            self._pull_call = self._clock.callLater(0, self._pull)

    def _pull(self) -> None:
        self._pull_call = None
        if (
            self.producer is not None
            and self.mode is ProducerMode.PULL
            and self._drained()
        ):
            self.producer.resumeProducing()

    def _cancel_pull(self) -> None:
        if self._pull_call is not None:
            self._pull_call.cancel()
            self._pull_call = None
