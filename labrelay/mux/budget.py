# -*- test-case-name: tests.unit.test_yamux_window -*-
"""
The process-wide budget of bytes that yamux peers may make this process hold.

What a peer may make us hold on one stream is that stream's *commitment*:
its receive window (bytes the peer may still send without asking) plus the
bytes received and not yet passed on.  Granted window cannot be taken back,
so bounding memory means bounding what is granted.  Every
:class:`~labrelay.mux.stream.YamuxStream` of every session of the process
charges its commitment to one :class:`BufferBudget`.  A stream starts with
yamux's initial 256 KiB window; its window doubles (up to the session's
maximum, frp's 6 MiB) only while all the commitments together fit in the
budget, and halves while they do not, down to :data:`FLOOR`.  The floor is
always granted, so a stream that is read keeps moving however many others
are stalled; memory is therefore bounded by about
``max(limit, streams * 256 KiB)`` plus one transport buffer per stream.
"""

from .frames import INITIAL_WINDOW

#: The window every stream always gets back, however full the budget: half
#: of yamux's initial window (a stream that is read still moves, if more
#: slowly; a stalled one holds little).
FLOOR = INITIAL_WINDOW // 2


class BufferBudget:
    """
    The sum of the commitments of the streams charged to it.

    :ivar limit: the most they should reach together; 0 means no limit
        (each stream may then grow to its session's maximum window).
    :ivar used: the current sum.
    """

    def __init__(self, limit: int = 0):
        self.limit = limit
        self.used = 0

    def __repr__(self) -> str:
        return f"<BufferBudget used={self.used} limit={self.limit}>"

    def fits(self, others: int, commitment: int) -> bool:
        """Whether a stream may commit *commitment* bytes while the other
        streams commit *others*."""
        return self.limit <= 0 or others + commitment <= self.limit

    def window(self, current: int, charged: int, maximum: int, grow: bool) -> int:
        """
        The window a stream should grant up to next.

        *current* is its present target, *charged* what it has charged
        (so ``used - charged`` is the others' share), *maximum* its
        session's maximum window.  Grow by doubling when *grow* and the
        budget has room; otherwise halve while it does not fit, never
        below :data:`FLOOR`.
        """
        others = self.used - charged
        if grow and current < maximum:
            grown = min(maximum, current * 2)
            if self.fits(others, grown):
                return grown
        while current > FLOOR and not self.fits(others, current):
            current = max(FLOOR, current // 2)
        return current
