# -*- test-case-name: tests.unit.test_throttle -*-
"""
One throttle for every password labrelay checks: on the server the token
of a Login (and of a NewWorkConn under ``authenticate_new_work_conns``), a
vhost route's ``http_user``/``http_pwd`` and the dashboard's Basic auth; on
the client its admin API's ``admin_user``/``admin_pwd``.  Each
kind of check is a *realm*; realms are throttled separately, and share the
global failure budget.

Who is throttled.  Attempts are grouped by source: an IPv4 address, or the
/64 network of an IPv6 address (one host usually holds a whole /64, so
per-address counting would be no limit at all).  Within a source, failures
are counted per claimed identity (the Login's ``user``, the proxy, the
dashboard user name): a success clears only that identity's streak, so a
legitimate client that keeps logging in from behind the same NAT as a
guesser does not reset the guesser's backoff.  The delay and the caps below
use the source's total.

What a source in backoff gets.  Once a source has failed recently, every
attempt from it -- right or wrong -- is *held*: it is checked and answered
only after ``base_delay * 2 ** (failures + held - 1)`` seconds, at most
``max_delay`` (8 s: below frpc's 10 s wait for LoginResp, so a right token
from a client behind a NAT shared with a guesser still gets in, and a
mistyped token still shows frps's error in frpc's log).  ``held`` counts
the source's attempts already waiting, so parallel attempts wait
exponentially longer instead of being answered together; a held answer
keeps its place until its timer fires even if the peer hangs up, so
closing early buys nothing.  A source with no recent failure is answered
at once; its first failure is answered after ``base_delay``.

Caps.  At most ``max_pending`` attempts of one source are held at a time
(32 by default: a client behind a NAT shared with someone guessing five
times every two seconds still gets a slot) and ``max_pending_total`` in
all; beyond that an attempt is refused *without being checked*, so the
refusal tells nothing about the password.  It is answered ``max_delay``
later too (without taking a place), so a peer cannot spin on refusals.  With ``max_delay`` 8 s this
bounds one source to ``max_pending / max_delay`` guesses a second (4 by
default), however many connections it opens.

Global failure budget.  Beyond ``failure_budget`` failures a second over all
sources (a guesser with many addresses), every attempt from a source that
has not succeeded recently is held ``max_delay``, so fresh addresses buy
only one guess per ``max_delay`` each, within the ``max_pending_total``
bound.  Sources with a recent success (a client reconnecting, a browser
that already passed the vhost's Basic auth) are not delayed by the budget.

Memory.  At most ``max_sources`` sources are remembered per realm; a full
table forgets, among its least recently failing sources, the one with the
fewest failures and nothing held.  A source is also forgotten after
``quiet_period`` seconds without a failure.  Identities per source are
capped at ``max_names`` (8) and kept as hashes; further ones share one
count.  The worst case, every table full, is about 16,384 x 9 small
entries per realm (some 15 MB).

All time comes from the injected clock; :meth:`PasswordThrottle.close`
cancels every held answer.
"""

import ipaddress
from collections import OrderedDict
from typing import Callable, Optional

import attrs
from twisted.internet.defer import Deferred, succeed

#: Outcomes of :meth:`PasswordThrottle.check`.
PASS = "pass"
FAIL = "fail"
REFUSED = "refused"  # too many attempts held: refused, not checked

BASE_DELAY = 0.5
MAX_DELAY = 8.0
QUIET_PERIOD = 600.0
MAX_PENDING = 32
MAX_PENDING_TOTAL = 1024
FAILURE_BUDGET = 50
MAX_SOURCES = 16384
MAX_NAMES = 8
#: Sources remembered as having succeeded (exempt from the global budget).
MAX_KNOWN_GOOD = 4096


def source_group(host: str) -> str:
    """The unit throttled for *host*: an IPv4 address as is (an
    IPv4-mapped IPv6 address as its IPv4 address), an IPv6 address as its
    /64 network; anything else (a Unix socket, "") as is."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if address.version == 6:
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def _name_key(who: str) -> int:
    """What the table keeps of a claimed identity: its hash, so an
    attacker's 10 KiB user names cost a few bytes each."""
    return hash(who) or 1


@attrs.frozen
class Verdict:
    """What :meth:`PasswordThrottle.check` decided.

    :ivar outcome: :data:`PASS`, :data:`FAIL` or :data:`REFUSED`.
    :ivar source: the source group the attempt counted against.
    :ivar failures: the source's recent failures after this attempt.
    :ivar delay: seconds the answer was held.
    """

    outcome: str
    source: str
    failures: int = 0
    delay: float = 0.0


@attrs.define
class _Source:
    names: dict = attrs.Factory(dict)  # hash(who) -> failures
    total: int = 0  # sum of names' failures
    held: int = 0  # attempts waiting for their answer
    last: float = 0.0  # time of the last failure


class PasswordThrottle:
    """
    See the module docstring.  Zero turns ``max_pending``,
    ``max_pending_total`` and ``failure_budget`` off.

    :param clock: an ``IReactorTime``.
    """

    def __init__(
        self,
        clock,
        *,
        base_delay: float = BASE_DELAY,
        max_delay: float = MAX_DELAY,
        quiet_period: float = QUIET_PERIOD,
        max_pending: int = MAX_PENDING,
        max_pending_total: int = MAX_PENDING_TOTAL,
        failure_budget: int = FAILURE_BUDGET,
        max_sources: int = MAX_SOURCES,
        max_names: int = MAX_NAMES,
    ):
        self._clock = clock
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.quiet_period = quiet_period
        self.max_pending = max_pending
        self.max_pending_total = max_pending_total
        self.failure_budget = failure_budget
        self.max_sources = max_sources
        self.max_names = max_names
        self.held = 0
        self._sources = {}  # realm -> OrderedDict(group -> _Source)
        self._good = OrderedDict()  # (realm, group) -> time of success
        self._window = (0, 0, 0)  # (second, failures in it, in the previous)
        self._timers = set()

    # -- the check ------------------------------------------------------------

    def check(
        self, realm: str, host: str, who: str, verify: Callable[[], bool]
    ) -> Deferred:
        """
        Decide one password attempt of *who* from *host*: a Deferred firing
        with a :class:`Verdict`, at once for a source not in backoff that
        passes, else when the hold ends (``max_delay`` for a refusal).  *verify* is called once, when the
        answer is due (never for :data:`REFUSED`).
        """
        group = source_group(host)
        now = self._clock.seconds()
        table = self._sources.setdefault(realm, OrderedDict())
        record = self._record(table, group, now)
        overloaded = self._over_budget(now) and not self._known_good(realm, group, now)
        if not overloaded and (
            record is None or (record.total == 0 and record.held == 0)
        ):
            if verify():
                self._passed(realm, table, group, who, now)
                return succeed(Verdict(PASS, group))
            record = self._failed(table, group, who, now)
            return self._hold(
                record,
                self._delay(record.total - 1, record),
                Verdict(FAIL, group, record.total),
            )
        if record is None:
            record = self._new_record(table, group, now)
        if (self.max_pending > 0 and record.held >= self.max_pending) or (
            self.max_pending_total > 0 and self.held >= self.max_pending_total
        ):
            return self._later(
                self.max_delay, Verdict(REFUSED, group, record.total, self.max_delay)
            )
        delay = self._delay(record.total, record)
        if overloaded:
            delay = self.max_delay

        def decide():
            now = self._clock.seconds()
            if verify():
                self._passed(realm, table, group, who, now)
                return Verdict(PASS, group, record.total, delay)
            failed = self._failed(table, group, who, now, record)
            return Verdict(FAIL, group, failed.total, delay)

        return self._hold(record, delay, decide)

    def _delay(self, exponent: int, record: _Source) -> float:
        exponent = max(exponent + record.held, 0)
        return min(self.base_delay * 2 ** min(exponent, 32), self.max_delay)

    def _later(self, delay: float, verdict: Verdict) -> Deferred:
        """Fire with *verdict* after *delay* (no place held)."""
        d = Deferred()

        def fire():
            self._timers.discard(call)
            d.callback(verdict)

        call = self._clock.callLater(delay, fire)
        self._timers.add(call)
        return d

    def _hold(self, record: _Source, delay: float, answer) -> Deferred:
        """Fire with *answer* (a Verdict, or a callable making one) after
        *delay*, holding one of the source's places until then."""
        record.held += 1
        self.held += 1
        d = Deferred()

        def fire():
            self._timers.discard(call)
            record.held -= 1
            self.held -= 1
            verdict = (
                answer() if callable(answer) else attrs.evolve(answer, delay=delay)
            )
            d.callback(verdict)

        call = self._clock.callLater(delay, fire)
        self._timers.add(call)
        return d

    # -- bookkeeping ------------------------------------------------------------

    def _record(self, table, group: str, now: float) -> Optional[_Source]:
        record = table.get(group)
        if (
            record is not None
            and record.held == 0
            and now - record.last > self.quiet_period
        ):
            del table[group]
            return None
        return record

    def _new_record(self, table, group: str, now: float) -> _Source:
        record = table[group] = _Source(last=now)
        if len(table) > self.max_sources:
            self._evict(table, keep=group)
        return record

    def _evict(self, table, keep: str) -> None:
        """Forget, among the 8 least recently failing sources with nothing
        held, the one with the fewest failures (never *keep*)."""
        victim, fewest = None, None
        for index, (group, record) in enumerate(table.items()):
            if index >= 8:
                break
            if record.held or group == keep:
                continue
            if fewest is None or record.total < fewest:
                victim, fewest = group, record.total
        if victim is None:
            victim = next(g for g in table if g != keep)
        del table[victim]

    def _failed(
        self, table, group: str, who: str, now: float, record: Optional[_Source] = None
    ) -> _Source:
        if record is None or table.get(group) is not record:
            record = table.get(group) or self._new_record(table, group, now)
        who = _name_key(who)
        if who not in record.names and len(record.names) >= self.max_names:
            who = 0  # the shared count of further identities
        record.names[who] = record.names.get(who, 0) + 1
        record.total += 1
        record.last = now
        table.move_to_end(group)
        self._count_failure(now)
        return record

    def _passed(self, realm: str, table, group: str, who: str, now: float) -> None:
        record = table.get(group)
        if record is not None:
            record.total -= record.names.pop(_name_key(who), 0)
            if record.total == 0 and record.held == 0:
                del table[group]
        key = (realm, group)
        self._good[key] = now
        self._good.move_to_end(key)
        while len(self._good) > MAX_KNOWN_GOOD:
            self._good.popitem(last=False)

    def _known_good(self, realm: str, group: str, now: float) -> bool:
        seen = self._good.get((realm, group))
        return seen is not None and now - seen <= self.quiet_period

    def _count_failure(self, now: float) -> None:
        second, count, previous = self._window
        current = int(now)
        if current == second:
            count += 1
        else:
            previous = count if current == second + 1 else 0
            second, count = current, 1
        self._window = (second, count, previous)

    def _over_budget(self, now: float) -> bool:
        """More than failure_budget failures in the last second (the
        previous second's count weighted by how much of it is in the
        window)."""
        if self.failure_budget <= 0:
            return False
        second, count, previous = self._window
        current = int(now)
        if current == second + 1:
            previous, count = count, 0
        elif current != second:
            return False
        rate = count + previous * (1 - (now - current))
        return rate > self.failure_budget

    # -- introspection ------------------------------------------------------------

    def failures_from(self, realm: str, host: str) -> int:
        """Recent failures of *host*'s source."""
        table = self._sources.get(realm, {})
        record = (
            self._record(table, source_group(host), self._clock.seconds())
            if table
            else None
        )
        return 0 if record is None else record.total

    def held_from(self, realm: str, host: str) -> int:
        """Attempts of *host*'s source waiting for their answer."""
        record = self._sources.get(realm, {}).get(source_group(host))
        return 0 if record is None else record.held

    def tracked_sources(self, realm: str) -> int:
        return len(self._sources.get(realm, ()))

    def close(self) -> None:
        """Cancel every held answer (the server is stopping)."""
        timers, self._timers = self._timers, set()
        for call in timers:
            if call.active():
                call.cancel()
