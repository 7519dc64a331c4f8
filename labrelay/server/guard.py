# -*- test-case-name: tests.test_guard -*-
"""
What the server remembers so that nobody can abuse it before (or without)
proving the token: per-source bookkeeping, the replay cache and
rate-limited log lines.  Every structure here is bounded and every timer
runs on an injected clock.

:class:`SourceGuard` owns, per source IP address:

* **unauthenticated connections**: an :class:`Admission` is taken when a
  connection is accepted and given back when its first Login or
  NewWorkConn succeeds (under tcp_mux: the first stream's) or when it
  closes.  It carries a *deadline* (``unauthenticated_timeout``, 10 s):
  when it passes the connection is closed, whatever it did meanwhile --
  a TLS handshake, yamux streams opened and closed, Pings answered, bytes
  that are not yet a whole message.  Only a successful Login or a verified
  NewWorkConn clears it.  Beyond ``max_per_source`` for one address new
  connections are refused at once.  When ``max_total`` are pending in all,
  a new connection *evicts* the oldest pending connection of the address
  that holds the most (as OpenSSH's MaxStartups drops, rather than
  refusing every newcomer): a flood from a few addresses cannot keep a
  correct client of another address out, it only shortens its own
  connections' lives.  An address that hosts a live control connection is
  not refused (unless it alone holds ``max_total``) and its connections
  are never evicted: a client with ``tcp_mux = false`` opens its work
  connections from that address, each unauthenticated until its
  NewWorkConn arrives, and they must get through a flood.  Entries exist
  only while their count is positive; admission, eviction and release
  cost O(1).
* **failed authentications** (a wrong privilege key in a Login, or in a
  NewWorkConn when ``authenticate_new_work_conns`` is on): the error answer
  is delayed, 0.5 s for the first failure, doubling up to 8 s (below
  frpc's 10 s wait for LoginResp, so a misconfigured frpc still logs the
  server's real error).  A delayed answer holds one of the source's
  ``max_pending_failures`` slots until its timer fires, even if the peer
  hangs up first, so closing early buys an attacker nothing; while every
  slot is taken, further Logins from that address are refused at once
  *without checking the key* (a correct guess is refused too, so the
  refusal is no oracle).  A success from the address, or ``quiet_period``
  seconds without a failure, starts the doubling over.  At most
  ``max_sources`` addresses are remembered; the least recently failing one
  is forgotten first.

:class:`ReplayCache` remembers the ``(timestamp, privilege_key)`` pairs of
accepted authentications and refuses a pair presented again more than
``grace`` seconds after its first use.  frp's key is
``md5(token + timestamp)`` with no nonce and no client identity, so a
pair repeats legitimately whenever two messages are made within the same
second with the same token: a reconnect Login right after a login, the
first NewWorkConns right after their Login, a Ping -- and, since one token
is usually shared by every client of a server, the Logins of *different*
clients that reconnect at once after a server restart, or their
NewWorkConns.  Such repeats cannot be told from a replay, whatever run_id
they carry (binding a pair to the run_id of its first use would refuse
those simultaneous clients), so the rule is about time alone:

* a pair never seen before is accepted and remembered;
* a repeat within ``grace`` seconds of the first use is accepted: both
  messages were made within one second and each reached the server within
  frp's 10 s first-message bound, so 11 s covers every repeat frp itself
  would accept;
* a later repeat is a replay and is refused (Login: LoginResp error;
  NewWorkConn: closed; Ping: the control is closed), with a log line.

Pairs are remembered for ``memory`` seconds (a day) when
``auth_timestamp_skew`` is off, capped at ``capacity`` entries (oldest
forgotten first): a Login captured long ago can be replayed once it is
forgotten.  Turning ``auth_timestamp_skew`` on closes that gap: a pair then
only needs remembering while its timestamp is within the skew, and an
older one is refused by the skew check.  Only pairs that passed the key
check are stored, so filling the cache needs the token.  An on-path
attacker who sees a plaintext Login can still use its pair within the
grace period; TLS is the answer to that.
"""

from collections import OrderedDict
from typing import Callable, Optional

import attrs

#: First failure's delay; each further failure doubles it.
FAILURE_BASE_DELAY = 0.5
#: Longest delay (frpc waits 10 s for LoginResp).
FAILURE_MAX_DELAY = 8.0
#: Seconds without a failure after which a source starts over.
FAILURE_QUIET_PERIOD = 600.0
#: Delayed failure answers one source may have outstanding.
MAX_PENDING_FAILURES = 4
#: Addresses whose failures are remembered.
MAX_TRACKED_SOURCES = 4096

#: Seconds within which a repeated (timestamp, key) pair may be a
#: legitimate same-second repeat (see the module docstring).
REPEAT_GRACE = 11.0
#: Seconds a pair is remembered when no timestamp skew is enforced.
REPLAY_MEMORY = 24 * 3600.0
#: Pairs remembered at most.
REPLAY_CAPACITY = 16384


#: Seconds a connection may stay unauthenticated (config key
#: ``unauthenticated_timeout``).
UNAUTHENTICATED_TIMEOUT = 10.0


class Admission:
    """
    One unauthenticated connection counted against its source, with its
    deadline.  Give it back with :meth:`release` (idempotent).  If the
    deadline passes first, or the guard evicts it to make room, it is
    released and ``on_end(evicted)`` is called: the holder closes the
    connection.
    """

    __slots__ = ("_guard", "host", "released", "protected", "timeout",
                 "_on_end", "_timer")

    def __init__(self, guard: "SourceGuard", host: str,
                 on_end: Optional[Callable[[bool], None]], protected: bool):
        self._guard = guard
        self.host = host
        self.released = False
        #: from an address with a live control: never evicted
        self.protected = protected
        self.timeout = guard.timeout
        self._on_end = on_end
        self._timer = None
        if guard.timeout > 0:
            self._timer = guard._clock.callLater(guard.timeout, self._end,
                                                 False)

    def release(self) -> None:
        if not self.released:
            self.released = True
            if self._timer is not None:
                if self._timer.active():
                    self._timer.cancel()
                self._timer = None
            self._guard._release(self)

    def _end(self, evicted: bool) -> None:
        """The deadline passed (or the guard evicts this one)."""
        if not evicted:
            self._timer = None  # it is this call
        if self.released:
            return
        self.release()
        if self._on_end is not None:
            self._on_end(evicted)


@attrs.define
class _Failures:
    count: int = 0          # failures in the current streak
    last: float = 0.0       # when the last one happened
    pending: int = 0        # delayed answers not yet sent


class SourceGuard:
    """
    Per-source bookkeeping (see the module docstring).  A cap of 0 turns
    that cap off.

    :param clock: an ``IReactorTime``.
    """

    def __init__(self, clock, *, max_per_source: int = 32,
                 max_total: int = 1024,
                 timeout: float = UNAUTHENTICATED_TIMEOUT,
                 base_delay: float = FAILURE_BASE_DELAY,
                 max_delay: float = FAILURE_MAX_DELAY,
                 quiet_period: float = FAILURE_QUIET_PERIOD,
                 max_pending_failures: int = MAX_PENDING_FAILURES,
                 max_sources: int = MAX_TRACKED_SOURCES):
        self._clock = clock
        self.max_per_source = max_per_source
        self.max_total = max_total
        self.timeout = timeout
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.quiet_period = quiet_period
        self.max_pending_failures = max_pending_failures
        self.max_sources = max_sources
        self.unauthenticated = 0
        self.evictions = 0
        # Evictable admissions per host, oldest first; hosts by how many
        # they hold (count -> hosts, in the order they reached it), so the
        # host holding the most is found in O(1).
        self._queues = {}                # host -> {Admission: None}
        self._by_count = {}              # count -> {host: None}
        self._most = 0
        self._protected = {}             # Admission -> None
        self._protected_from = {}        # host -> protected admissions
        self._controls = {}              # host -> live control count
        self._failures = OrderedDict()   # host -> _Failures, LRU order
        self._timers = set()

    # -- unauthenticated connections -----------------------------------------

    def _is_protected(self, host: str) -> bool:
        return bool(self._controls.get(host))

    def admission_refusal(self, host: str) -> Optional[str]:
        """Why a new connection from *host* must be refused now, or None
        (it may still need :meth:`make_room` first)."""
        if self._is_protected(host):
            count = self._protected_from.get(host, 0)
            if self.max_total > 0 and count >= self.max_total:
                # a client's pool is a few connections; this many means
                # someone shares its address to flood
                return (f"{count} unauthenticated connections from {host}, "
                        f"which has a logged-in client "
                        f"(max_unauthenticated_connections = "
                        f"{self.max_total})")
            return None
        count = len(self._queues.get(host, ()))
        if self.max_per_source > 0 and count >= self.max_per_source:
            return (f"{count} unauthenticated connections from {host} "
                    f"(max_unauthenticated_per_source = "
                    f"{self.max_per_source})")
        if (self.max_total > 0 and self.unauthenticated >= self.max_total
                and not self._queues):
            return (f"{self.unauthenticated} unauthenticated connections in "
                    f"total (max_unauthenticated_connections = "
                    f"{self.max_total}), none of them evictable")
        return None

    def make_room(self) -> Optional[str]:
        """If ``max_total`` are pending, evict the oldest pending
        connection of the address holding the most (its holder is told to
        close it); return that address, or None if nothing was evicted."""
        if (self.max_total <= 0 or self.unauthenticated < self.max_total
                or not self._queues):
            return None
        host = next(iter(self._by_count[self._most]))
        victim = next(iter(self._queues[host]))
        self.evictions += 1
        victim._end(True)
        return host

    def admit(self, host: str,
              on_end: Optional[Callable[[bool], None]] = None) -> Admission:
        """Count one more unauthenticated connection from *host*; *on_end*
        is called (with ``evicted``) if its deadline passes or it is
        evicted."""
        admission = Admission(self, host, on_end, self._is_protected(host))
        self.unauthenticated += 1
        if admission.protected:
            self._protected[admission] = None
            self._protected_from[host] = self._protected_from.get(host, 0) + 1
        else:
            queue = self._queues.setdefault(host, {})
            queue[admission] = None
            self._move(host, len(queue) - 1, len(queue))
        return admission

    def _move(self, host: str, old: int, new: int) -> None:
        """*host* now holds *new* evictable admissions instead of *old*."""
        if old:
            hosts = self._by_count[old]
            del hosts[host]
            if not hosts:
                del self._by_count[old]
        if new:
            self._by_count.setdefault(new, {})[host] = None
        if new > self._most:
            self._most = new
        elif old == self._most and old not in self._by_count:
            self._most = new if new else max(self._by_count, default=0)

    def unauthenticated_from(self, host: str) -> int:
        return (len(self._queues.get(host, ()))
                + self._protected_from.get(host, 0))

    def _release(self, admission: Admission) -> None:
        self.unauthenticated = max(self.unauthenticated - 1, 0)
        if admission.protected:
            if self._protected.pop(admission, False) is None:
                count = self._protected_from[admission.host] - 1
                if count:
                    self._protected_from[admission.host] = count
                else:
                    del self._protected_from[admission.host]
            return
        queue = self._queues.get(admission.host)
        if queue is None or admission not in queue:
            return
        del queue[admission]
        if not queue:
            del self._queues[admission.host]
        self._move(admission.host, len(queue) + 1, len(queue))

    @property
    def tracked_unauthenticated_sources(self) -> int:
        return len(self._queues)

    # -- live controls -------------------------------------------------------

    def control_started(self, host: str) -> None:
        self._controls[host] = self._controls.get(host, 0) + 1

    def control_ended(self, host: str) -> None:
        count = self._controls.get(host, 0) - 1
        if count > 0:
            self._controls[host] = count
        else:
            self._controls.pop(host, None)

    # -- failed authentications ----------------------------------------------

    def _record(self, host: str, create: bool) -> Optional[_Failures]:
        record = self._failures.get(host)
        now = self._clock.seconds()
        if (record is not None and record.pending == 0
                and now - record.last > self.quiet_period):
            del self._failures[host]
            record = None
        if record is None and create:
            record = self._failures[host] = _Failures(last=now)
            while len(self._failures) > self.max_sources:
                self._failures.popitem(last=False)
        return record

    def failure_refusal(self, host: str) -> Optional[str]:
        """Why an authentication attempt from *host* is refused without
        even checking it (too many delayed failures pending), or None."""
        record = self._record(host, create=False)
        if (record is not None and self.max_pending_failures > 0
                and record.pending >= self.max_pending_failures):
            return (f"too many failed logins from {host}; try again in a "
                    f"few seconds")
        return None

    def record_failure(self, host: str) -> tuple[int, float]:
        """A failed authentication from *host*: ``(failures in a row,
        seconds to delay the answer)``."""
        record = self._record(host, create=True)
        self._failures.move_to_end(host)
        record.count += 1
        record.last = self._clock.seconds()
        delay = min(self.base_delay * 2 ** min(record.count - 1, 32),
                    self.max_delay)
        return record.count, delay

    def record_success(self, host: str) -> None:
        """A successful authentication from *host*: the doubling starts
        over (delayed answers already pending stay pending)."""
        record = self._failures.get(host)
        if record is not None:
            record.count = 0

    def failures_from(self, host: str) -> int:
        record = self._record(host, create=False)
        return 0 if record is None else record.count

    def pending_failures(self, host: str) -> int:
        record = self._failures.get(host)
        return 0 if record is None else record.pending

    @property
    def tracked_failure_sources(self) -> int:
        return len(self._failures)

    def answer_later(self, host: str, delay: float,
                     answer: Callable[[], None]) -> None:
        """Call *answer* after *delay*, holding one of *host*'s pending
        slots until then."""
        record = self._record(host, create=True)
        record.pending += 1

        def fire():
            self._timers.discard(call)
            record.pending -= 1
            answer()

        call = self._clock.callLater(delay, fire)
        self._timers.add(call)

    def close(self) -> None:
        """Cancel every delayed answer and deadline (the server is
        stopping)."""
        timers, self._timers = self._timers, set()
        for call in timers:
            if call.active():
                call.cancel()
        pending = [a for queue in self._queues.values() for a in queue]
        for admission in pending + list(self._protected):
            admission.release()


@attrs.define
class _Use:
    run_id: str
    first_seen: float
    expires: float


class ReplayCache:
    """
    The ``(timestamp, privilege_key)`` pairs of accepted authentications
    (see the module docstring for the rule).

    :param skew: the server's ``auth_timestamp_skew`` (0 = off).
    """

    def __init__(self, clock, *, skew: float = 0, grace: float = REPEAT_GRACE,
                 memory: float = REPLAY_MEMORY,
                 capacity: int = REPLAY_CAPACITY):
        self._clock = clock
        self.skew = skew
        self.grace = grace
        self.memory = memory
        self.capacity = capacity
        self._uses = OrderedDict()   # (timestamp, key) -> _Use

    def __len__(self):
        return len(self._uses)

    def _forget_expired(self, now: float) -> None:
        while self._uses:
            use = next(iter(self._uses.values()))
            if use.expires > now:
                break
            self._uses.popitem(last=False)

    def check(self, timestamp: int, key: str) -> Optional[str]:
        """Why this pair is a replay; None if it may be accepted."""
        now = self._clock.seconds()
        self._forget_expired(now)
        use = self._uses.get((timestamp, key))
        if use is None or now - use.first_seen <= self.grace:
            return None
        return (f"replayed credentials: timestamp {timestamp} and its "
                f"privilege_key were first used {now - use.first_seen:.0f}s "
                f"ago")

    def first_run_id(self, timestamp: int, key: str) -> Optional[str]:
        """The run_id of the pair's first use, if remembered (for logs)."""
        use = self._uses.get((timestamp, key))
        return None if use is None else use.run_id

    def remember(self, timestamp: int, key: str, run_id: str) -> None:
        """Record an accepted pair and who used it first (a repeat keeps
        its first use)."""
        pair = (timestamp, key)
        if pair in self._uses:
            return
        now = self._clock.seconds()
        if self.skew > 0:
            # After ts + skew the skew check refuses the pair anyway.
            expires = max(now + self.grace, timestamp + self.skew)
        else:
            expires = now + self.memory
        self._uses[pair] = _Use(run_id, now, expires)
        while len(self._uses) > self.capacity:
            self._uses.popitem(last=False)


class RateLimitedLog:
    """
    At most one line per *kind* every *interval* seconds; the next line
    says how many were held back.  Kinds are a small fixed set.
    """

    def __init__(self, clock, interval: float = 10.0):
        self._clock = clock
        self.interval = interval
        self._last = {}        # kind -> time of the last line
        self._held = {}        # kind -> lines held back since

    def allow(self, kind: str) -> Optional[int]:
        """None to stay quiet, else how many lines were held back."""
        now = self._clock.seconds()
        last = self._last.get(kind)
        if last is not None and now - last < self.interval:
            self._held[kind] = self._held.get(kind, 0) + 1
            return None
        self._last[kind] = now
        return self._held.pop(kind, 0)

