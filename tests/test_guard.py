# -*- test-case-name: tests.test_guard -*-
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
from labrelay.server.guard import (REPEAT_GRACE, RateLimitedLog, ReplayCache,
                                   SourceGuard)
from labrelay.sniff import SniffingFactory


class ClockTestCase(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.addCleanup(
            lambda: self.assertEqual(self.clock.getDelayedCalls(), []))


class AdmissionTests(ClockTestCase):
    """Counting unauthenticated connections per source and in total."""

    def test_per_source_cap(self):
        """A source at its cap is refused; another source is not."""
        guard = SourceGuard(self.clock, max_per_source=2, max_total=100)
        guard.admit("10.0.0.1")
        guard.admit("10.0.0.1")
        self.assertIn("max_unauthenticated_per_source = 2",
                      guard.admission_refusal("10.0.0.1"))
        self.assertIsNone(guard.admission_refusal("10.0.0.2"))

    def test_release_frees_a_slot(self):
        """Releasing an admission (twice: idempotent) frees exactly one
        slot and forgets an address whose count reaches zero."""
        guard = SourceGuard(self.clock, max_per_source=1, max_total=100)
        admission = guard.admit("10.0.0.1")
        self.assertIsNotNone(guard.admission_refusal("10.0.0.1"))
        admission.release()
        admission.release()
        self.assertIsNone(guard.admission_refusal("10.0.0.1"))
        self.assertEqual((guard.unauthenticated,
                          guard.tracked_unauthenticated_sources), (0, 0))

    def test_total_cap(self):
        """The total cap refuses every source once reached."""
        guard = SourceGuard(self.clock, max_per_source=0, max_total=3)
        for host in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
            guard.admit(host)
        self.assertIn("max_unauthenticated_connections = 3",
                      guard.admission_refusal("10.0.0.4"))

    def test_zero_turns_caps_off(self):
        """Caps of 0 never refuse."""
        guard = SourceGuard(self.clock, max_per_source=0, max_total=0)
        for _ in range(5000):
            guard.admit("10.0.0.1")
        self.assertIsNone(guard.admission_refusal("10.0.0.1"))

    def test_source_with_live_control_not_capped_per_source(self):
        """An address hosting a live control may exceed the per-source cap
        (its work-connection bursts) until that control ends; the total
        cap still applies."""
        guard = SourceGuard(self.clock, max_per_source=1, max_total=3)
        guard.admit("10.0.0.1")
        guard.control_started("10.0.0.1")
        self.assertIsNone(guard.admission_refusal("10.0.0.1"))
        guard.admit("10.0.0.1")
        last = guard.admit("10.0.0.1")
        self.assertIn("in total", guard.admission_refusal("10.0.0.1"))
        last.release()
        self.assertIsNone(guard.admission_refusal("10.0.0.1"))
        guard.control_ended("10.0.0.1")
        self.assertIn("from 10.0.0.1", guard.admission_refusal("10.0.0.1"))


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
        cache.check(0, "other")        # purges what has expired
        self.assertEqual(len(cache), 0)


class ReplayKindTests(ClockTestCase):
    """#11: a pair first used by another message type is never a Login."""

    def test_work_conn_pair_refused_as_login(self):
        cache = ReplayCache(self.clock)
        cache.remember(1000, "k", "run", "NewWorkConn")
        self.assertIn("first used by a NewWorkConn",
                      cache.check(1000, "k", "Login"))

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
        self.assertIn("61s behind the server's clock (auth_timestamp_skew "
                      "= 60)", timestamp_skew_error(1000, 1061, 60))
        self.assertIn("61s ahead of the server's clock",
                      timestamp_skew_error(1061, 1000, 60))


class RateLimitedLogTests(ClockTestCase):
    """One line per kind and interval."""

    def test_holds_back_and_counts(self):
        """Within the interval lines are held back; the next allowed line
        reports how many; kinds are independent."""
        log = RateLimitedLog(self.clock, interval=10)
        self.assertEqual(log.allow("a"), 0)
        self.assertEqual([log.allow("a") for _ in range(3)],
                         [None, None, None])
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


class SniffAdmissionTests(ClockTestCase):
    """The sniffer asks `admit` about every accepted connection."""

    def connect(self, admit):
        inner = _Adopting()
        factory = SniffingFactory(Factory.forProtocol(lambda: inner), None,
                                  tls_only=False, clock=self.clock,
                                  first_byte_timeout=10, admit=admit)
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
            lambda addr: asked.append(addr.host))
        self.assertEqual(asked, ["192.0.2.7"])
        self.assertTrue(transport.disconnecting)
        protocol.dataReceived(b"o")
        self.assertIsNone(inner.transport)
        protocol.connectionLost(Failure(ConnectionDone()))

    def test_ticket_handed_over_and_released(self):
        """The ticket is offered to the inner protocol and released once
        the connection ends."""
        ticket = _Ticket()
        protocol, transport, inner = self.connect(lambda addr: ticket)
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
        protocol, transport, inner = self.connect(lambda addr: ticket)
        self.clock.advance(10)
        self.assertTrue(transport.disconnecting)
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(ticket.released, 1)
