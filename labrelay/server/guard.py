# -*- test-case-name: tests.unit.test_guard -*-
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

Failed password checks are throttled by
:class:`labrelay.throttle.PasswordThrottle`.

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
  NewWorkConn: closed; Ping: the control is closed), with a log line;
* a Login is refused, even within the grace, when its pair was first used
  by another message type.  A NewWorkConn travels in clear and an outsider
  makes the server ask for one (by connecting to a public port), so
  without this its fresh pair could be replayed as a Login that replaces
  the client's session.  The reverse repeats are frpc's own (its first
  NewWorkConns and a Ping made within its Login's second) and a
  NewWorkConn or Ping grants nothing by itself (a work connection only
  joins its own session's or address's client, a Ping travels inside the
  control's encryption), so they keep the time rule.  The one legitimate
  case refused is a reconnect Login made in the same second as one of the
  client's own NewWorkConns or Pings; frpc retries a second later.

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
from zope.interface import implementer

from ..interfaces import IAdmission

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


@implementer(IAdmission)
class Admission:
    """
    One unauthenticated connection counted against its source, with its
    deadline.  Give it back with :meth:`release` (idempotent).  If the
    deadline passes first, or the guard evicts it to make room, it is
    released and ``on_end(evicted)`` is called: the holder closes the
    connection.
    """

    __slots__ = (
        "_guard",
        "host",
        "released",
        "protected",
        "timeout",
        "_on_end",
        "_timer",
    )

    def __init__(
        self,
        guard: "SourceGuard",
        host: str,
        on_end: Optional[Callable[[bool], None]],
        protected: bool,
    ):
        self._guard = guard
        self.host = host
        self.released = False
        #: from an address with a live control: never evicted
        self.protected = protected
        self.timeout = guard.timeout
        self._on_end = on_end
        self._timer = None
        if guard.timeout > 0:
            self._timer = guard._clock.callLater(guard.timeout, self._end, False)

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


class SourceGuard:
    """
    Per-source bookkeeping (see the module docstring).  A cap of 0 turns
    that cap off.

    :param clock: an ``IReactorTime``.
    """

    def __init__(
        self,
        clock,
        *,
        max_per_source: int = 32,
        max_total: int = 1024,
        timeout: float = UNAUTHENTICATED_TIMEOUT,
    ):
        self._clock = clock
        self.max_per_source = max_per_source
        self.max_total = max_total
        self.timeout = timeout
        self.unauthenticated = 0
        self.evictions = 0
        # Evictable admissions per host, oldest first; hosts by how many
        # they hold (count -> hosts, in the order they reached it), so the
        # host holding the most is found in O(1).
        self._queues = {}  # host -> {Admission: None}
        self._by_count = {}  # count -> {host: None}
        self._most = 0
        self._protected = {}  # Admission -> None
        self._protected_from = {}  # host -> protected admissions
        self._controls = {}  # host -> live control count
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
                return (
                    f"{count} unauthenticated connections from {host}, "
                    f"which has a logged-in client "
                    f"(max_unauthenticated_connections = "
                    f"{self.max_total})"
                )
            return None
        count = len(self._queues.get(host, ()))
        if self.max_per_source > 0 and count >= self.max_per_source:
            return (
                f"{count} unauthenticated connections from {host} "
                f"(max_unauthenticated_per_source = "
                f"{self.max_per_source})"
            )
        if (
            self.max_total > 0
            and self.unauthenticated >= self.max_total
            and not self._queues
        ):
            return (
                f"{self.unauthenticated} unauthenticated connections in "
                f"total (max_unauthenticated_connections = "
                f"{self.max_total}), none of them evictable"
            )
        return None

    def make_room(self) -> Optional[str]:
        """If ``max_total`` are pending, evict the oldest pending
        connection of the address holding the most (its holder is told to
        close it); return that address, or None if nothing was evicted."""
        if (
            self.max_total <= 0
            or self.unauthenticated < self.max_total
            or not self._queues
        ):
            return None
        host = next(iter(self._by_count[self._most]))
        victim = next(iter(self._queues[host]))
        self.evictions += 1
        victim._end(True)
        return host

    def admit(
        self, host: str, on_end: Optional[Callable[[bool], None]] = None
    ) -> Admission:
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
        return len(self._queues.get(host, ())) + self._protected_from.get(host, 0)

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


#: The message type whose pairs may be repeated only by the same type.
LOGIN = "Login"


@attrs.define
class _Use:
    run_id: str
    first_seen: float
    expires: float
    kind: str = LOGIN


class ReplayCache:
    """
    The ``(timestamp, privilege_key)`` pairs of accepted authentications
    (see the module docstring for the rule).

    :param skew: the server's ``auth_timestamp_skew`` (0 = off).
    """

    def __init__(
        self,
        clock,
        *,
        skew: float = 0,
        grace: float = REPEAT_GRACE,
        memory: float = REPLAY_MEMORY,
        capacity: int = REPLAY_CAPACITY,
    ):
        self._clock = clock
        self.skew = skew
        self.grace = grace
        self.memory = memory
        self.capacity = capacity
        self._uses = OrderedDict()  # (timestamp, key) -> _Use

    def __len__(self):
        return len(self._uses)

    def _forget_expired(self, now: float) -> None:
        while self._uses:
            use = next(iter(self._uses.values()))
            if use.expires > now:
                break
            self._uses.popitem(last=False)

    def check(self, timestamp: int, key: str, kind: str = LOGIN) -> Optional[str]:
        """Why this pair, presented in a message of type *kind* (the
        message's name), is a replay; None if it may be accepted."""
        now = self._clock.seconds()
        self._forget_expired(now)
        use = self._uses.get((timestamp, key))
        if use is None:
            return None
        if kind == LOGIN and use.kind != LOGIN:
            return (
                f"replayed credentials: timestamp {timestamp} and its "
                f"privilege_key were first used by a {use.kind}, not a "
                f"Login"
            )
        if now - use.first_seen <= self.grace:
            return None
        return (
            f"replayed credentials: timestamp {timestamp} and its "
            f"privilege_key were first used {now - use.first_seen:.0f}s "
            f"ago"
        )

    def first_run_id(self, timestamp: int, key: str) -> Optional[str]:
        """The run_id of the pair's first use, if remembered (for logs)."""
        use = self._uses.get((timestamp, key))
        return None if use is None else use.run_id

    def remember(
        self, timestamp: int, key: str, run_id: str, kind: str = LOGIN
    ) -> None:
        """Record an accepted pair, who used it first and in which message
        type (a repeat keeps its first use)."""
        pair = (timestamp, key)
        if pair in self._uses:
            return
        now = self._clock.seconds()
        if self.skew > 0:
            # After ts + skew the skew check refuses the pair anyway.
            expires = max(now + self.grace, timestamp + self.skew)
        else:
            expires = now + self.memory
        self._uses[pair] = _Use(run_id, now, expires, kind)
        while len(self._uses) > self.capacity:
            self._uses.popitem(last=False)


class RateLimitedLog:
    """
    At most one line per *kind* (and *key*: a source, say) every
    *interval* seconds, and at most *per_kind* lines of one kind per
    interval over all its keys; the next line allowed says how many were
    held back.  Kinds are a small fixed set; keys are bounded (the least
    recently logged are forgotten, with their held-back counts).
    """

    def __init__(
        self, clock, interval: float = 10.0, per_kind: int = 20, max_keys: int = 1024
    ):
        self._clock = clock
        self.interval = interval
        self.per_kind = per_kind
        self.max_keys = max_keys
        self._last = OrderedDict()  # (kind, key) -> time of the last line
        self._held = {}  # (kind, key) -> lines held back since
        self._budget = {}  # kind -> (window start, lines in it)

    def allow(self, kind: str, key: str = "") -> Optional[int]:
        """None to stay quiet, else how many lines were held back."""
        now = self._clock.seconds()
        slot = (kind, key)
        last = self._last.get(slot)
        start, lines = self._budget.get(kind, (now, 0))
        if now - start >= self.interval:
            start, lines = now, 0
        if (last is not None and now - last < self.interval) or (
            key and 0 < self.per_kind <= lines
        ):
            self._held[slot] = self._held.get(slot, 0) + 1
            if last is None:  # never logged: due as soon as the budget allows
                self._keep(slot, float("-inf"))
            return None
        self._budget[kind] = (start, lines + 1)
        self._keep(slot, now)
        return self._held.pop(slot, 0)

    def _keep(self, slot, when: float) -> None:
        self._last[slot] = when
        self._last.move_to_end(slot)
        while len(self._last) > self.max_keys:
            old, _ = self._last.popitem(last=False)
            self._held.pop(old, None)
