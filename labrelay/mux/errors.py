"""
What opening a yamux stream or a session's end can report.

:meth:`~labrelay.mux.session.YamuxSession.open_stream` raises the first
three; :meth:`~labrelay.mux.session.YamuxSession.when_closed` gives a
:class:`SessionError` when a session ends abnormally.
"""

from ..errors import LabrelayError

__all__ = ["GoAwayReceived", "SessionClosed", "SessionError", "StreamsExhausted"]


class SessionClosed(LabrelayError):
    """The session has ended (or never started); no stream can be opened."""


class GoAwayReceived(LabrelayError):
    """The peer sent GoAway(normal): it accepts no new streams."""


class StreamsExhausted(LabrelayError):
    """Every stream id of our parity has been used."""


class SessionError(LabrelayError):
    """The session ended abnormally (protocol error, timeout, peer's GoAway error)."""
