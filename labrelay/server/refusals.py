# -*- test-case-name: tests.unit.test_auth_rules,tests.unit.test_auth_hardening,tests.integration.test_auth_hardening -*-
"""
The server's warnings about what it refuses: refused Logins, NewWorkConns
and Pings (an :class:`~labrelay.server.auth.Verdict`'s log text), failed
password checks of the vhost and the dashboard, connections closed at
their ``unauthenticated_timeout`` deadline, and connections the source
guard refuses or evicts.

A flood reaches thousands of these a second, so most go through a
:class:`~labrelay.server.guard.RateLimitedLog`: at most one line per kind
(and source) every few seconds, the next one saying how many were held
back.
"""

from twisted.logger import Logger

from .auth import AUTH_FAILURES, WORK_BINDING, WORK_SESSIONS, throttle_refusal


def _failures_held(held: int, source: str) -> str:
    return f" ({held} more failures from {source} suppressed)" if held else ""


def _held(held: int, source: str) -> str:
    return f" ({held} more suppressed)" if held else ""


def _held_since(held: int, source: str) -> str:
    return f" ({held} more since the last such line)"


#: a verdict's rate limit -> (counted per source?, how a line says how
#: many were held back)
_LIMITS = {
    AUTH_FAILURES: (True, _failures_held),
    WORK_BINDING: (True, _held),
    WORK_SESSIONS: (False, _held_since),
}


class RefusalLog:
    """
    :param quiet: the server's :class:`~labrelay.server.guard.RateLimitedLog`.
    """

    _log = Logger()

    def __init__(self, quiet):
        self.quiet = quiet

    def refused(self, peer: str, verdict) -> None:
        """Log why *peer*'s message was refused (*verdict*), within its
        rate limit; a verdict with no log text logs nothing."""
        if not verdict.log:
            return
        limit = _LIMITS.get(verdict.quiet)
        if limit is None:
            self._log.warn("{peer}: {refusal}", peer=peer, refusal=verdict.log)
            return
        per_source, held_back = limit
        held = self.quiet.allow(verdict.quiet, verdict.source if per_source else "")
        if held is not None:
            self._log.warn(
                "{peer}: {refusal}{more}",
                peer=peer,
                refusal=verdict.log,
                more=held_back(held, verdict.source),
            )

    def auth_failure(self, peer: str, problem: str, checked) -> None:
        """One line per refused password check (*checked*, a
        :class:`labrelay.throttle.Verdict`), at most one per source every
        few seconds (the next says how many were suppressed)."""
        self.refused(peer, throttle_refusal(problem, checked))

    def deadline_passed(self, peer: str, why: str) -> None:
        """Log that *peer* is closed at its ``unauthenticated_timeout``
        deadline, because *why*: one line per 10 s at most, saying how
        many were held back."""
        held = self.quiet.allow("deadline")
        if held is not None:
            more = f" ({held} more such closes since the last line)" if held else ""
            self._log.warn(
                "{peer}: {why}; closing{more}", peer=peer, why=why, more=more
            )

    def evicted(self, count: int, victim: str, source: str) -> None:
        """The oldest unauthenticated connection of *victim* was closed to
        admit one from *source*; *count* were pending."""
        held = self.quiet.allow("eviction")
        if held is not None:
            self._log.warn(
                "{count} unauthenticated connections (max_"
                "unauthenticated_connections); closing the oldest "
                "one from {victim} to admit one from {source} "
                "({held} more evicted since the last such line)",
                count=count,
                victim=victim,
                source=source,
                held=held,
            )

    def not_admitted(self, why: str, source: str) -> None:
        """A new connection from *source* was refused at once: *why*."""
        held = self.quiet.allow("admission")
        if held is not None:
            self._log.warn(
                "refusing new connections: {why}; closing them at "
                "once (this one from {source}; {held} more "
                "refused since the last such line)",
                why=why,
                source=source,
                held=held,
            )
