# -*- test-case-name: tests.unit.test_yamux_session,tests.integration.test_yamux_session -*-
"""
A yamux session's keepalive, as hashicorp/yamux's: a Ping every
``keepalive_interval`` seconds, each sent once the previous one was
answered, and the session ends when an answer takes longer than
``keepalive_timeout``.  Answering the peer's Pings is the session's (it
needs no state).
"""

from .frames import MAX_LENGTH


class Keepalive:
    """
    :param clock: an ``IReactorTime``.
    :param interval: seconds between an answer and the next Ping; 0
        disables keepalive.
    :param timeout: seconds a Ping may wait for its answer.
    :param send_ping: called with the opaque value of each Ping to send.
    :param timed_out: called when an answer is late.
    :ivar ping_id: the opaque value of the last Ping sent.
    """

    def __init__(self, clock, interval: float, timeout: float, send_ping, timed_out):
        self._clock = clock
        self.interval = interval
        self.timeout = timeout
        self._send_ping = send_ping
        self._timed_out = timed_out
        self.ping_id = 0
        self._outstanding = None
        self._next_call = None
        self._timeout_call = None

    def schedule(self) -> None:
        """Ping after the interval."""
        if self.interval > 0:
            self._next_call = self._clock.callLater(self.interval, self.ping)

    def ping(self) -> None:
        """Send a Ping now; its answer is due within the timeout."""
        self._next_call = None
        self.ping_id = (self.ping_id + 1) & MAX_LENGTH
        self._outstanding = self.ping_id
        self._send_ping(self.ping_id)
        self._timeout_call = self._clock.callLater(self.timeout, self._late)

    def answered(self, value: int) -> None:
        """The peer answered a Ping with *value*; the last one counts."""
        if value != self._outstanding:
            return
        self._outstanding = None
        if self._timeout_call is not None:
            self._timeout_call.cancel()
            self._timeout_call = None
        self.schedule()

    def _late(self) -> None:
        self._timeout_call = None
        self._timed_out()

    def stop(self) -> None:
        """Cancel every timer (the session ended)."""
        for call in (self._next_call, self._timeout_call):
            if call is not None and call.active():
                call.cancel()
        self._next_call = self._timeout_call = None
