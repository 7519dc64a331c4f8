# -*- test-case-name: tests.unit.test_guard -*-
"""
Unit tests for labrelay.server.guard (per-source bookkeeping, the replay
cache, rate-limited log lines), the timestamp skew check of
labrelay.protocol.auth, and the admission hook of labrelay.sniff; all on a
task.Clock and StringTransports.
"""

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from labrelay.protocol.auth import timestamp_skew_error
from labrelay.server.guard import REPEAT_GRACE, RateLimitedLog, ReplayCache, SourceGuard
from labrelay.sniff import SniffingFactory


class ClockTestCase(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.addCleanup(lambda: self.assertEqual(self.clock.getDelayedCalls(), []))


class AdmissionTests(ClockTestCase):
    """Counting unauthenticated connections per source and in total."""

    def guard(self, **kwargs):
        guard = SourceGuard(self.clock, **kwargs)
        self.addCleanup(guard.close)
        return guard

    def test_per_source_cap(self):
        """A source at its cap is refused; another source is not."""
        guard = self.guard(max_per_source=2, max_total=100)
        guard.admit("10.0.0.1")
        guard.admit("10.0.0.1")
        self.assertIn(
            "max_unauthenticated_per_source = 2", guard.admission_refusal("10.0.0.1")
        )
        self.assertIsNone(guard.admission_refusal("10.0.0.2"))

    def test_release_frees_a_slot(self):
        """Releasing an admission (twice: idempotent) frees exactly one
        slot and forgets an address whose count reaches zero."""
        guard = self.guard(max_per_source=1, max_total=100)
        admission = guard.admit("10.0.0.1")
        self.assertIsNotNone(guard.admission_refusal("10.0.0.1"))
        admission.release()
        admission.release()
        self.assertIsNone(guard.admission_refusal("10.0.0.1"))
        self.assertEqual(
            (guard.unauthenticated, guard.tracked_unauthenticated_sources), (0, 0)
        )

    def test_total_cap_evicts_oldest_of_biggest_source(self):
        """At the total cap a newcomer is not refused: room is made by
        evicting the oldest pending connection of the address holding the
        most (its holder is told), not of the others."""
        guard = self.guard(max_per_source=0, max_total=4)
        ended = []
        a = guard.admit("10.0.0.1", lambda evicted: ended.append(("a", evicted)))
        guard.admit("10.0.0.2", lambda evicted: ended.append(("b1", evicted)))
        guard.admit("10.0.0.2", lambda evicted: ended.append(("b2", evicted)))
        guard.admit("10.0.0.3", lambda evicted: ended.append(("c", evicted)))
        self.assertIsNone(guard.admission_refusal("10.0.0.4"))
        self.assertEqual(guard.make_room(), "10.0.0.2")
        self.assertEqual(ended, [("b1", True)])
        guard.admit("10.0.0.4")
        self.assertEqual(guard.unauthenticated, 4)
        self.assertEqual(guard.unauthenticated_from("10.0.0.2"), 1)
        # now every address holds one: the oldest overall goes first
        self.assertEqual(guard.make_room(), "10.0.0.1")
        self.assertTrue(a.released)
        self.assertEqual(guard.evictions, 2)

    def test_no_room_needed_below_cap(self):
        """Below the total cap nothing is evicted."""
        guard = self.guard(max_per_source=0, max_total=3)
        guard.admit("10.0.0.1")
        guard.admit("10.0.0.1")
        self.assertIsNone(guard.make_room())
        self.assertEqual(guard.unauthenticated, 2)

    def test_eviction_bookkeeping_under_churn(self):
        """Thousands of admissions from 40 sources at a cap of 100: the
        total never passes the cap, the address holding the most is always
        the one evicted from, and everything is released in the end."""
        guard = self.guard(max_per_source=0, max_total=100)
        admissions = []
        for i in range(5000):
            host = f"127.0.0.{10 + i % 40}"
            if guard.unauthenticated >= guard.max_total:
                most = max(
                    guard.unauthenticated_from(f"127.0.0.{10 + j}") for j in range(40)
                )
                victim = guard.make_room()
                self.assertEqual(guard.unauthenticated_from(victim) + 1, most)
            self.assertLess(guard.unauthenticated, 100)
            admissions.append(guard.admit(host))
            if i % 7 == 0:
                admissions[i // 2].release()
        for admission in admissions:
            admission.release()
        self.assertEqual(
            (guard.unauthenticated, guard.tracked_unauthenticated_sources), (0, 0)
        )

    def test_refused_when_nothing_is_evictable(self):
        """At the total cap with only protected (live-control) connections
        pending, a newcomer from elsewhere is refused."""
        guard = self.guard(max_per_source=0, max_total=2)
        guard.control_started("10.0.0.1")
        guard.admit("10.0.0.1")
        guard.admit("10.0.0.1")
        self.assertIsNone(guard.make_room())
        self.assertIn("none of them evictable", guard.admission_refusal("10.0.0.2"))

    def test_zero_turns_caps_off(self):
        """Caps of 0 never refuse."""
        guard = self.guard(max_per_source=0, max_total=0)
        for _ in range(5000):
            guard.admit("10.0.0.1")
        self.assertIsNone(guard.admission_refusal("10.0.0.1"))
        self.assertIsNone(guard.make_room())

    def test_source_with_live_control_never_refused_or_evicted(self):
        """An address hosting a live control is held to neither cap (its
        work-connection bursts get through a flood), and its pending
        connections are never evicted; once the control ends, the
        per-source cap applies again."""
        guard = self.guard(max_per_source=1, max_total=5)
        guard.admit("10.0.0.1")
        guard.control_started("10.0.0.1")
        ended = []
        works = [guard.admit("10.0.0.1", ended.append) for _ in range(4)]
        self.assertIsNone(guard.admission_refusal("10.0.0.1"))
        self.assertEqual(guard.unauthenticated, 5)
        # a flood from elsewhere evicts only the one taken before the
        # login, then only its own
        self.assertEqual(guard.make_room(), "10.0.0.1")
        guard.admit("10.0.0.2")
        self.assertEqual(guard.make_room(), "10.0.0.2")
        guard.admit("10.0.0.2")
        self.assertEqual(guard.make_room(), "10.0.0.2")
        self.assertEqual(ended, [])
        self.assertFalse(any(w.released for w in works))
        guard.control_ended("10.0.0.1")
        guard.admit("10.0.0.1")
        self.assertIn("from 10.0.0.1", guard.admission_refusal("10.0.0.1"))

    def test_source_with_live_control_alone_filling_the_cap(self):
        """An address with a live control that alone holds max_total
        pending connections (far more than any pool) is refused."""
        guard = self.guard(max_per_source=1, max_total=3)
        guard.control_started("10.0.0.1")
        for _ in range(3):
            guard.admit("10.0.0.1")
        self.assertEqual(guard.unauthenticated_from("10.0.0.1"), 3)
        self.assertIn("has a logged-in client", guard.admission_refusal("10.0.0.1"))


class DeadlineTests(ClockTestCase):
    """Every admission ends at its deadline unless released."""

    def test_deadline_ends_the_connection(self):
        """At the deadline the admission is released and its holder told
        (not evicted); a second earlier is too soon."""
        guard = SourceGuard(self.clock, timeout=10)
        ended = []
        admission = guard.admit("10.0.0.1", ended.append)
        self.clock.advance(9.9)
        self.assertEqual(ended, [])
        self.clock.advance(0.1)
        self.assertEqual(ended, [False])
        self.assertTrue(admission.released)
        self.assertEqual(guard.unauthenticated, 0)

    def test_release_clears_the_deadline(self):
        """A released admission (the peer authenticated) has no deadline
        left."""
        guard = SourceGuard(self.clock, timeout=10)
        ended = []
        guard.admit("10.0.0.1", ended.append).release()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(60)
        self.assertEqual(ended, [])

    def test_close_clears_every_deadline(self):
        """Stopping the guard leaves no timer."""
        guard = SourceGuard(self.clock, timeout=10)
        guard.control_started("10.0.0.2")
        guard.admit("10.0.0.1")
        guard.admit("10.0.0.2")
        guard.close()
        self.assertEqual(guard.unauthenticated, 0)


class ReplayCacheTests(ClockTestCase):
    """Remembering (timestamp, privilege_key) pairs."""

    def test_new_pair_accepted(self):
        """A pair never seen is not a replay."""
        cache = ReplayCache(self.clock)
        self.assertIsNone(cache.check(1700000000, "k"))

    def test_repeat_within_grace_accepted(self):
        """A repeat within the grace period is accepted, whatever run_id
        presents it (same-second logins of clients sharing a token)."""
        cache = ReplayCache(self.clock)
        cache.remember(1700000000, "k", "run-a")
        self.clock.advance(REPEAT_GRACE)
        self.assertIsNone(cache.check(1700000000, "k"))

    def test_repeat_after_grace_refused(self):
        """A repeat after the grace period is a replay; the first use's
        run_id is kept for the log line, even after repeats."""
        cache = ReplayCache(self.clock)
        cache.remember(1700000000, "k", "run-a")
        self.clock.advance(1)
        cache.remember(1700000000, "k", "run-b")
        self.clock.advance(REPEAT_GRACE)
        error = cache.check(1700000000, "k")
        self.assertIn("replayed credentials", error)
        self.assertIn("first used 12s ago", error)
        self.assertEqual(cache.first_run_id(1700000000, "k"), "run-a")
        self.assertIsNone(cache.check(1700000001, "k"))

    def test_forgotten_after_memory(self):
        """Without a skew, a pair is remembered for `memory` seconds."""
        cache = ReplayCache(self.clock, memory=3600)
        cache.remember(1, "k", "r")
        self.clock.advance(3599)
        self.assertIsNotNone(cache.check(1, "k"))
        self.clock.advance(2)
        self.assertIsNone(cache.check(1, "k"))
        self.assertEqual(len(cache), 0)

    def test_capacity(self):
        """The cache holds at most `capacity` pairs, oldest out first."""
        cache = ReplayCache(self.clock, capacity=10)
        for ts in range(25):
            cache.remember(ts, "k", "r")
        self.assertEqual(len(cache), 10)
        self.clock.advance(REPEAT_GRACE + 1)
        self.assertIsNone(cache.check(14, "k"))
        self.assertIsNotNone(cache.check(15, "k"))

    def test_skew_shortens_memory(self):
        """With a skew, a pair is kept only while its timestamp is within
        the skew (never less than the grace period)."""
        self.clock.advance(1_700_000_000)
        cache = ReplayCache(self.clock, skew=60)
        cache.remember(1_700_000_000, "k", "r")
        self.clock.advance(59)
        self.assertIsNotNone(cache.check(1_700_000_000, "k"))
        self.clock.advance(2)
        cache.check(0, "other")  # purges what has expired
        self.assertEqual(len(cache), 0)


class ReplayKindTests(ClockTestCase):
    """#11: a pair first used by another message type is never a Login."""

    def test_work_conn_pair_refused_as_login(self):
        cache = ReplayCache(self.clock)
        cache.remember(1000, "k", "run", "NewWorkConn")
        self.assertIn("first used by a NewWorkConn", cache.check(1000, "k", "Login"))

    def test_login_pair_repeated_by_its_followers(self):
        """frpc's own NewWorkConns and Pings within its Login's second
        repeat the Login's pair: accepted within the grace."""
        cache = ReplayCache(self.clock)
        cache.remember(1000, "k", "run", "Login")
        self.assertIsNone(cache.check(1000, "k", "NewWorkConn"))
        self.assertIsNone(cache.check(1000, "k", "Ping"))
        self.assertIsNone(cache.check(1000, "k", "Login"))


class SkewTests(SynchronousTestCase):
    """timestamp_skew_error, labrelay's optional freshness check."""

    def test_off(self):
        """An allowed skew of 0 accepts any timestamp (frp's behaviour)."""
        self.assertIsNone(timestamp_skew_error(0, 1_700_000_000, 0))

    def test_within(self):
        """A timestamp exactly `allowed` away either way is accepted."""
        self.assertIsNone(timestamp_skew_error(1000, 1060, 60))
        self.assertIsNone(timestamp_skew_error(1060, 1000, 60))

    def test_behind_and_ahead(self):
        """Beyond the skew the error names the direction and the key."""
        self.assertIn(
            "61s behind the server's clock (auth_timestamp_skew = 60)",
            timestamp_skew_error(1000, 1061, 60),
        )
        self.assertIn(
            "61s ahead of the server's clock", timestamp_skew_error(1061, 1000, 60)
        )


class RateLimitedLogTests(ClockTestCase):
    """One line per kind and interval."""

    def test_holds_back_and_counts(self):
        """Within the interval lines are held back; the next allowed line
        reports how many; kinds are independent."""
        log = RateLimitedLog(self.clock, interval=10)
        self.assertEqual(log.allow("a"), 0)
        self.assertEqual([log.allow("a") for _ in range(3)], [None, None, None])
        self.assertEqual(log.allow("b"), 0)
        self.clock.advance(10)
        self.assertEqual(log.allow("a"), 3)
        self.assertIsNone(log.allow("a"))

    def test_per_key_and_kind_ceiling(self):
        """Keys (sources) are limited each, and all keys of one kind
        together are limited to per_kind lines per interval; what was held
        back is reported by the key's next line."""
        log = RateLimitedLog(self.clock, interval=10, per_kind=3)
        allowed = [log.allow("fail", f"10.0.0.{i}") for i in range(100)]
        self.assertEqual(allowed[:3], [0, 0, 0])
        self.assertEqual(set(allowed[3:]), {None})
        self.assertIsNone(log.allow("fail", "10.0.0.0"))
        self.clock.advance(10)
        self.assertEqual(log.allow("fail", "10.0.0.0"), 1)
        self.assertEqual(log.allow("fail", "10.0.0.50"), 1)

    def test_keys_bounded(self):
        log = RateLimitedLog(self.clock, max_keys=5, per_kind=0)
        for i in range(50):
            log.allow("fail", str(i))
        self.assertLessEqual(len(log._last), 5)
        self.assertLessEqual(len(log._held), 5)


class _Ticket:
    def __init__(self):
        self.released = 0

    def release(self):
        self.released += 1


class _Adopting(Protocol):
    adopted = None

    def adopt_admission(self, ticket):
        self.adopted = ticket


class _Explaining(_Adopting):
    explained = 0

    def unauthenticated_timeout(self):
        self.explained += 1


class SniffAdmissionTests(ClockTestCase):
    """The sniffer asks `admit` about every accepted connection."""

    def connect(self, admit):
        inner = _Adopting()
        factory = SniffingFactory(
            Factory.forProtocol(lambda: inner),
            None,
            tls_only=False,
            clock=self.clock,
            first_byte_timeout=10,
            admit=admit,
        )
        peer = IPv4Address("TCP", "192.0.2.7", 4321)
        protocol = factory.buildProtocol(peer)
        transport = StringTransport(peerAddress=peer)
        protocol.makeConnection(transport)
        return protocol, transport, inner

    def test_refused_at_once(self):
        """admit returning None closes the connection at once, with no
        first-byte timer, and later data builds nothing."""
        asked = []
        protocol, transport, inner = self.connect(
            lambda addr, ended: asked.append(addr.host)
        )
        self.assertEqual(asked, ["192.0.2.7"])
        self.assertTrue(transport.disconnecting)
        protocol.dataReceived(b"o")
        self.assertIsNone(inner.transport)
        protocol.connectionLost(Failure(ConnectionDone()))

    def test_ticket_handed_over_and_released(self):
        """The ticket is offered to the inner protocol and released once
        the connection ends."""
        ticket = _Ticket()
        protocol, transport, inner = self.connect(lambda addr, ended: ticket)
        self.assertFalse(transport.disconnecting)
        protocol.dataReceived(b"o")
        self.assertIs(inner.adopted, ticket)
        self.assertEqual(ticket.released, 0)
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(ticket.released, 1)

    def test_released_when_silent_connection_ends(self):
        """A connection that never sent a byte releases its ticket when
        it ends (first-byte timeout)."""
        ticket = _Ticket()
        protocol, transport, inner = self.connect(lambda addr, ended: ticket)
        self.clock.advance(10)
        self.assertTrue(transport.disconnecting)
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(ticket.released, 1)

    def test_deadline_aborts_and_lets_the_protocol_explain(self):
        """When the ticket's holder is told the deadline passed, the
        sniffer asks the frp protocol to explain (it logs) and aborts the
        connection, even mid-handshake; the first-byte timer is gone."""
        inner = _Explaining()
        factory = SniffingFactory(
            Factory.forProtocol(lambda: inner),
            None,
            tls_only=False,
            clock=self.clock,
            first_byte_timeout=10,
            admit=lambda addr, ended: ticket,
        )
        ticket = _Ticket()
        protocol = factory.buildProtocol(IPv4Address("TCP", "192.0.2.7", 1))
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(b"o")
        protocol._admission_ended(False)
        self.assertEqual(inner.explained, 1)
        self.assertTrue(transport.disconnected)  # aborted
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(ticket.released, 1)

    def test_eviction_aborts_silently(self):
        """An evicted connection is aborted without asking the protocol
        to explain (the server logs evictions, rate-limited), and before
        its first byte without a first-byte timer left behind."""
        ended = []
        ticket = _Ticket()

        def admit(addr, callback):
            ended.append(callback)
            return ticket

        protocol, transport, inner = self.connect(admit)
        ended[0](True)
        self.assertTrue(transport.disconnected)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(ticket.released, 1)
