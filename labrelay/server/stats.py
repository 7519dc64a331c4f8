# -*- test-case-name: tests.unit.test_dashboard,tests.integration.test_dashboard,tests.integration.test_metrics -*-
"""
Traffic bookkeeping for the dashboard and the Prometheus metrics.

:class:`ServerStats` keeps, per proxy *name* (as frp's in-memory metrics
collector does): today's bytes in and out and those of the six days
before, a day of traffic in :data:`BUCKET_SECONDS` buckets (for the
dashboard's plot), running totals since start-up (Prometheus counters), the
connections open now, the last start and close times, and whether the proxy
is online.  A proxy that goes offline stays listed with its figures, and is
forgotten :data:`FORGET_OFFLINE_SECONDS` after it closed (frp: 7 days).

Proxy names are chosen by clients, so their churn must not grow this
memory: at most ``max_tracked_proxies`` names are kept (online proxies
always are; beyond the bound the name offline the longest is forgotten
first), and names offline for too long are forgotten as others come and
go, with or without a dashboard sampling them.  Both cost O(1) per proxy
start or close (offline names are kept in the order they closed).

How bytes are counted, live, at no cost on the relay path: every splice
already adds each chunk's length to its own counter
(:class:`~labrelay.relay.Splice` ``bytes_a_to_b``/``bytes_b_to_a``, and the
same two counters on an HTTP exchange).  A proxy reads its open splices'
counters on demand (:meth:`ProxyBase.traffic
<labrelay.server.proxy_base.ProxyBase.traffic>`), so a long download shows
up while it runs, not when it ends.  :meth:`ServerStats.sample` takes the
difference since its last look and books it to the current day and bucket;
it runs before every dashboard or metrics read and every
:data:`SAMPLE_SECONDS` (so bytes land in the bucket in which they flowed,
within that much).  A proxy that went offline is still read until its last
connection ends, so no byte of a connection that outlives its proxy is
lost.

"In" is what users sent towards the client's service and "out" what came
back, as frp (``TrafficIn`` counts user → work connection).  Days are local
calendar days, as frp's.
"""

import datetime
from array import array
from collections import OrderedDict, deque

from .registry import Registry

#: Width of one bucket of the day-long traffic history, in seconds.
BUCKET_SECONDS = 600
#: Buckets in the history: one day.
BUCKETS = 24 * 3600 // BUCKET_SECONDS
#: Days of per-day traffic kept, today included (frp's ReserveDays).
RESERVE_DAYS = 7
#: How often the dashboard books live counters into the history, seconds.
SAMPLE_SECONDS = 60
#: How long an offline proxy stays listed after it closed (frp: 7 days).
FORGET_OFFLINE_SECONDS = 7 * 24 * 3600


def local_day(timestamp: float) -> int:
    """The local calendar day of *timestamp*, as a day number."""
    return datetime.date.fromtimestamp(timestamp).toordinal()


class _History:
    """Bytes in and out per bucket for the last :data:`BUCKETS` buckets: a
    ring of fixed-size integer arrays (2 x 8 bytes per bucket)."""

    __slots__ = ("_in", "_out", "_newest")

    def __init__(self):
        self._in = array("q", bytes(8 * BUCKETS))
        self._out = array("q", bytes(8 * BUCKETS))
        self._newest = None  # absolute number of the newest bucket

    def _advance(self, bucket: int) -> int:
        """Move the ring forward to *bucket* (zeroing skipped slots); return
        the bucket to book into (never older than the newest one)."""
        if self._newest is None:
            self._newest = bucket
        elif bucket > self._newest:
            for skipped in range(
                self._newest + 1, min(bucket, self._newest + BUCKETS) + 1
            ):
                self._in[skipped % BUCKETS] = 0
                self._out[skipped % BUCKETS] = 0
            self._newest = bucket
        return self._newest

    def add(self, bucket: int, n_in: int, n_out: int) -> None:
        slot = self._advance(bucket) % BUCKETS
        self._in[slot] += n_in
        self._out[slot] += n_out

    def last_day(self, bucket: int) -> tuple:
        """(in, out) lists, oldest first, the last item being *bucket*."""
        newest = self._advance(bucket)
        order = [(newest + 1 + k) % BUCKETS for k in range(BUCKETS)]
        return [self._in[i] for i in order], [self._out[i] for i in order]


class ProxyStats:
    """What is known about one proxy name.  The day counts and the
    history are made when the first byte is booked: a name that never
    carried traffic (name churn) costs a few hundred bytes."""

    __slots__ = (
        "name",
        "type",
        "proxy",
        "client_version",
        "last_start",
        "last_close",
        "total_in",
        "total_out",
        "_sources",
        "_days",
        "_history",
    )

    def __init__(self, name: str, type_: str):
        self.name = name
        self.type = type_
        self.proxy = None  # the online proxy object, if any
        self.client_version = ""  # of the client that last started it
        self.last_start = None  # timestamps
        self.last_close = None
        self.total_in = 0  # since start-up (Prometheus counters)
        self.total_out = 0
        # Proxy objects still read: the online one, and offline ones whose
        # connections are still open.  Each is [proxy, seen_in, seen_out].
        self._sources = []
        self._days = ()  # then a deque of [day, in, out], newest last
        self._history = None  # then a _History

    @property
    def online(self) -> bool:
        return self.proxy is not None

    @property
    def status(self) -> str:
        return "online" if self.proxy is not None else "offline"

    @property
    def current_connections(self) -> int:
        return sum(source[0].active_splices for source in self._sources)

    def started(self, proxy, now: float) -> None:
        self.proxy = proxy
        self.client_version = proxy.control.version
        self.last_start = now
        self._sources.append([proxy, 0, 0])

    def stopped(self, now: float) -> None:
        self.proxy = None
        self.last_close = now

    def collect(self, day: int, bucket: int) -> None:
        """Book what the proxies moved since the last look."""
        for source in list(self._sources):
            proxy = source[0]
            now_in, now_out = proxy.traffic()
            d_in, d_out = max(now_in - source[1], 0), max(now_out - source[2], 0)
            source[1], source[2] = now_in, now_out
            if d_in or d_out:
                self._book(day, bucket, d_in, d_out)
            if proxy is not self.proxy and proxy.active_splices == 0:
                self._sources.remove(source)  # offline and drained

    def _book(self, day: int, bucket: int, n_in: int, n_out: int) -> None:
        self.total_in += n_in
        self.total_out += n_out
        if self._history is None:
            self._days = deque(maxlen=RESERVE_DAYS)
            self._history = _History()
        days = self._days
        if not days or day > days[-1][0]:
            days.append([day, 0, 0])
        entry = days[-1]  # (a clock going backwards books to the newest)
        entry[1] += n_in
        entry[2] += n_out
        self._history.add(bucket, n_in, n_out)

    def day_traffic(self, day: int) -> tuple:
        """(in, out) of calendar day *day*."""
        for entry_day, n_in, n_out in self._days:
            if entry_day == day:
                return n_in, n_out
        return 0, 0

    def last_days(self, today: int) -> tuple:
        """([in], [out]) for today and each of the days before, newest
        first, :data:`RESERVE_DAYS` long (frp's ``GetLastDaysCount``)."""
        days = [self.day_traffic(today - k) for k in range(RESERVE_DAYS)]
        return [d[0] for d in days], [d[1] for d in days]

    def last_day_history(self, bucket: int) -> tuple:
        """([in], [out]) per bucket for the last day, oldest first."""
        if self._history is None:
            return [0] * BUCKETS, [0] * BUCKETS
        return self._history.last_day(bucket)


class ServerStats:
    """
    Every proxy name the server has seen, and the sampling of live counters.

    :param clock: an IReactorTime; ``seconds()`` dates everything.
    :param day_of: timestamp -> day number (tests use fixed-length days).
    :param max_tracked: a callable giving the most names kept (0: no
        bound); read each time, so a reload applies.
    """

    def __init__(self, clock, day_of=local_day, max_tracked=lambda: 0):
        self._clock = clock
        self._day_of = day_of
        self._max_tracked = max_tracked
        self.proxies = {}  # name -> ProxyStats
        self._offline = OrderedDict()  # offline names, longest offline first

    def _now(self):
        now = self._clock.seconds()
        return now, self._day_of(now), int(now // BUCKET_SECONDS)

    @property
    def today(self) -> int:
        return self._day_of(self._clock.seconds())

    @property
    def bucket(self) -> int:
        return int(self._clock.seconds() // BUCKET_SECONDS)

    def proxy_online(self, proxy) -> None:
        """*proxy* started and is registered under its name."""
        now, day, bucket = self._now()
        stats = self.proxies.get(proxy.name)
        if stats is not None:
            stats.collect(day, bucket)
        if stats is None or stats.type != proxy.type:
            # frp starts afresh when a name comes back with another type.
            stats = self.proxies[proxy.name] = ProxyStats(proxy.name, proxy.type)
        self._offline.pop(proxy.name, None)
        stats.started(proxy, now)
        self._bound(now)

    def proxy_offline(self, proxy) -> None:
        """*proxy* closed (its open connections may run on)."""
        now, day, bucket = self._now()
        stats = self.proxies.get(proxy.name)
        if stats is not None and stats.proxy is proxy:
            # stopped first: collecting then lets go of the proxy object
            # (and its client's) unless connections still run through it
            stats.stopped(now)
            stats.collect(day, bucket)
            self._offline.pop(proxy.name, None)
            self._offline[proxy.name] = None
            self._bound(now)

    def _bound(self, now: float) -> None:
        """Forget names offline for too long (oldest first, stopping at
        the first still too recent or still carrying connections), then
        the longest offline ones beyond ``max_tracked``."""
        offline, proxies = self._offline, self.proxies
        while offline:
            stats = proxies[next(iter(offline))]
            if (
                now - stats.last_close <= FORGET_OFFLINE_SECONDS
                or stats.current_connections
            ):
                break
            self._forget(stats.name)
        limit = self._max_tracked()
        while 0 < limit < len(proxies) and offline:
            self._forget(next(iter(offline)))

    def _forget(self, name: str) -> None:
        del self.proxies[name]
        self._offline.pop(name, None)

    def sample(self) -> None:
        """Book every proxy's traffic since the last sample; forget proxies
        offline for longer than :data:`FORGET_OFFLINE_SECONDS`."""
        now, day, bucket = self._now()
        for name, stats in list(self.proxies.items()):
            stats.collect(day, bucket)
            if (
                not stats.online
                and stats.last_close is not None
                and now - stats.last_close > FORGET_OFFLINE_SECONDS
                and stats.current_connections == 0
            ):
                self._forget(name)

    def get(self, name: str):
        """The :class:`ProxyStats` of *name*, or None."""
        return self.proxies.get(name)

    def by_type(self, type_: str) -> list:
        """The :class:`ProxyStats` of type *type_*, sorted by name."""
        return sorted(
            (s for s in self.proxies.values() if s.type == type_), key=lambda s: s.name
        )

    def all(self) -> list:
        return sorted(self.proxies.values(), key=lambda s: (s.type, s.name))

    def type_counts(self) -> dict:
        """Online proxies per type; a type seen once stays, at 0 (frp)."""
        counts = {}
        for stats in self.proxies.values():
            counts[stats.type] = counts.get(stats.type, 0) + stats.online
        return counts

    def today_totals(self) -> tuple:
        """(in, out) of every proxy today."""
        today = self.today
        total_in = total_out = 0
        for stats in self.proxies.values():
            n_in, n_out = stats.day_traffic(today)
            total_in += n_in
            total_out += n_out
        return total_in, total_out

    def current_connections(self) -> int:
        return sum(s.current_connections for s in self.proxies.values())


class StatsRegistry(Registry):
    """The server's :class:`~labrelay.server.registry.Registry`, also
    telling a :class:`ServerStats` when proxies come and go."""

    def __init__(self, stats: ServerStats):
        super().__init__()
        self.stats = stats

    def add_proxy(self, name, proxy) -> None:
        super().add_proxy(name, proxy)
        self.stats.proxy_online(proxy)

    def remove_proxy(self, name, proxy) -> None:
        if self.proxies.get(name) is proxy:
            self.stats.proxy_offline(proxy)
        super().remove_proxy(name, proxy)
