# -*- test-case-name: tests.unit.test_registration_budget,tests.integration.test_registration_budget -*-
"""
How much proxy registration the server does per slice of time.

A NewProxy costs the routes it registers (an http proxy: its domains x
locations, at most ``max_routes_per_proxy``; any other: 1).  One message is
cheap (about a millisecond per thousand routes), but a client can pipeline
many, and the parser hands every message of one read to the control at
once; many clients can do the same in one reactor turn.  The server keeps
one :class:`RegistrationBudget`: at most :data:`ROUTES_PER_WINDOW` routes
per :data:`WINDOW` seconds.  A control whose NewProxy finds the budget
spent holds it (and every message after it, so their order is kept) and
pauses its connection until the next window; meanwhile the reactor serves
everyone else.  A client registering a few hundred small proxies never
waits.
"""

#: Routes registered per window before NewProxy messages are held back.
ROUTES_PER_WINDOW = 1000
#: The window, in seconds.
WINDOW = 0.01


class RegistrationBudget:
    """
    :param clock: an ``IReactorTime``.
    """

    def __init__(
        self, clock, per_window: int = ROUTES_PER_WINDOW, window: float = WINDOW
    ):
        self._clock = clock
        self.per_window = per_window
        self.window = window
        self._start = None
        self._spent = 0

    def _current(self) -> float:
        now = self._clock.seconds()
        if (
            self._start is None or now >= self._start + self.window or now < self._start
        ):  # (a clock set back)
            self._start, self._spent = now, 0
        return now

    def wait(self) -> float:
        """Seconds until registering may go on; 0 means now."""
        now = self._current()
        if self._spent < self.per_window:
            return 0.0
        return max(self._start + self.window - now, 0.0) or self.window

    def spend(self, routes: int) -> None:
        """*routes* were just registered."""
        self._current()
        self._spent += max(routes, 1)
