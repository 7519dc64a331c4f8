# -*- test-case-name: tests.unit.test_yamux_window -*-
"""
One yamux stream's receive window, and its share of the process-wide
:class:`~labrelay.mux.budget.BufferBudget`.

The window starts at yamux's 256 KiB.  Credit goes back to the peer (a
WindowUpdate) only for bytes the stream has passed on, and, as yamux does,
only once at least half the window is owed.  With each grant the window
doubles up to the session's maximum while the budget has room for every
stream's window plus held bytes, and halves down to
:data:`~labrelay.mux.budget.FLOOR` while it has not.  Which bytes count
as passed on is the stream's business (:mod:`labrelay.mux.stream`); this
is the arithmetic.
"""

from .frames import INITIAL_WINDOW


class ReceiveWindow:
    """
    :param budget: the :class:`~labrelay.mux.budget.BufferBudget` charged.
    :param maximum: the session's maximum window.
    :ivar remaining: bytes the peer may still send before we grant more.
    :ivar target: the window granted up to.
    :ivar charged: what this window has charged to the budget.
    """

    __slots__ = ("remaining", "target", "charged", "_budget", "_maximum")

    def __init__(self, budget, maximum: int):
        self.remaining = INITIAL_WINDOW
        self.target = INITIAL_WINDOW
        self.charged = 0
        self._budget = budget
        self._maximum = maximum

    def recharge(self, held: int, gone: bool = False) -> None:
        """Charge the budget with what the peer may make us hold now: the
        remaining window plus *held* bytes not passed on (nothing once the
        stream is *gone*)."""
        commitment = 0 if gone else self.remaining + held
        self._budget.used += commitment - self.charged
        self.charged = commitment

    def credit(self, held: int, *, grow: bool, forced: bool = False):
        """
        The credit to grant now (a WindowUpdate's delta) while *held*
        bytes are not passed on, or None when none is due.  Unless
        *forced* (a SYN or ACK must go out, with whatever is owed, even 0)
        the window is resized first: grown if *grow* and the budget allows,
        else shrunk while the budget is over.
        """
        if not forced:
            if self.target - held - self.remaining < self.target // 2:
                return None
            self.recharge(held)
            self.target = self._budget.window(
                self.target, self.charged, self._maximum, grow=grow
            )
        delta = max(self.target - held - self.remaining, 0)
        if not forced and delta < self.target // 2:
            return None
        self.remaining += delta
        self.recharge(held)
        return delta
