"""
Tests for labrelay.throttle: the one throttle in front of every
password check, driven by a Clock.
"""

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from labrelay.throttle import FAIL, PASS, REFUSED, PasswordThrottle, source_group

A = "192.0.2.66"


class ThrottleCase(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1_000_000)
        self.throttle = PasswordThrottle(self.clock)
        self.addCleanup(self._no_timers_left)

    def _no_timers_left(self):
        self.clock.advance(60)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def attempt(self, ok, host=A, who="alice", realm="login"):
        """Start one attempt; a list that receives its Verdict."""
        got = []
        self.throttle.check(realm, host, who, lambda: ok).addCallback(got.append)
        return got

    def answered_after(self, got, limit=30.0, step=0.01):
        """Advance until *got* holds a verdict; the time it took."""
        waited = 0.0
        while not got:
            self.assertLess(waited, limit)
            self.clock.advance(step)
            waited += step
        return round(waited, 2)


class GroupTests(SynchronousTestCase):
    """What counts as one source."""

    def test_ipv4_as_is(self):
        self.assertEqual(source_group("203.0.113.7"), "203.0.113.7")

    def test_ipv6_by_64(self):
        """Two addresses of one /64 are one source; another /64 is not."""
        a = source_group("2001:db8:1:2::1")
        self.assertEqual(a, "2001:db8:1:2::/64")
        self.assertEqual(source_group("2001:db8:1:2:ffff:1:2:3"), a)
        self.assertNotEqual(source_group("2001:db8:1:3::1"), a)

    def test_mapped_ipv4(self):
        self.assertEqual(source_group("::ffff:192.0.2.1"), "192.0.2.1")

    def test_not_an_address(self):
        self.assertEqual(source_group(""), "")


class BackoffTests(ThrottleCase):
    """Per-source exponential delay of answers."""

    def test_cold_pass_answered_at_once(self):
        """A source with no failure is answered synchronously."""
        [verdict] = self.attempt(True)
        self.assertEqual(verdict.outcome, PASS)
        self.assertEqual(verdict.delay, 0)

    def test_delays_double_and_cap(self):
        """Sequential failures wait 0.5, 1, 2, 4, 8, 8 s."""
        for expected in (0.5, 1, 2, 4, 8, 8):
            got = self.attempt(False)
            self.assertEqual(self.answered_after(got), expected)
            self.assertEqual(got[0].outcome, FAIL)

    def test_parallel_attempts_wait_longer(self):
        """Attempts in flight count: ten at once from a cold source are
        answered ever later, not all together."""
        batch = [self.attempt(False) for _ in range(10)]
        delays = [v.delay for v in self._settle(batch)]
        self.assertEqual(delays[:5], [0.5, 2, 4, 8, 8])
        self.assertEqual(max(delays), 8)
        self.assertEqual(self.throttle.failures_from("login", A), 10)

    def _settle(self, batch):
        self.clock.advance(8)
        self.clock.advance(8)
        return [got[0] for got in batch]

    def test_right_password_held_then_passes(self):
        """In backoff a right password is not refused: it waits the
        source's delay and passes (#13: a client behind a shared NAT)."""
        self.answered_after(self.attempt(False))
        got = self.attempt(True, who="bob")
        self.assertEqual(got, [])
        self.assertEqual(self.answered_after(got), 1)
        self.assertEqual(got[0].outcome, PASS)

    def test_verify_called_when_answer_due(self):
        """A held attempt is checked when its answer is due, not before."""
        self.answered_after(self.attempt(False))
        calls = []
        self.throttle.check("login", A, "x", lambda: calls.append(1) or True)
        self.assertEqual(calls, [])
        self.clock.advance(1)
        self.assertEqual(calls, [1])

    def test_success_clears_only_its_identity(self):
        """A success by one user leaves the others' failures counted."""
        self.answered_after(self.attempt(False, who="mallory"))
        self.answered_after(self.attempt(False, who="alice"))
        self.answered_after(self.attempt(True, who="alice"))
        self.assertEqual(self.throttle.failures_from("login", A), 1)

    def test_quiet_period_forgets(self):
        self.answered_after(self.attempt(False))
        self.clock.advance(601)
        self.assertEqual(self.throttle.failures_from("login", A), 0)
        [verdict] = self.attempt(True)
        self.assertEqual(verdict.delay, 0)

    def test_sources_and_realms_separate(self):
        """Another address, or the same address in another realm, is not
        slowed down."""
        self.answered_after(self.attempt(False))
        [verdict] = self.attempt(True, host="192.0.2.67")
        self.assertEqual(verdict.delay, 0)
        [verdict] = self.attempt(True, realm="vhost")
        self.assertEqual(verdict.delay, 0)

    def test_ipv6_neighbours_share_backoff(self):
        """Failures from one /64 slow down the whole /64."""
        self.answered_after(self.attempt(False, host="2001:db8::1"))
        got = self.attempt(True, host="2001:db8::2")
        self.assertEqual(self.answered_after(got), 1)


class CapTests(ThrottleCase):
    """Bounds on held attempts: refused unchecked beyond them."""

    def test_per_source_cap(self):
        """Beyond max_pending held attempts the next is refused without
        calling verify, max_delay later (no spinning on refusals); another
        source still passes."""
        self.throttle.max_pending = 3
        for _ in range(3):
            self.attempt(False)
        checked = []
        got = []
        self.throttle.check(
            "login", A, "x", lambda: checked.append(1) or True
        ).addCallback(got.append)
        self.assertEqual(self.answered_after(got), 8)
        self.assertEqual(got[0].outcome, REFUSED)
        self.assertEqual(checked, [])
        [verdict] = self.attempt(True, host="192.0.2.67")
        self.assertEqual(verdict.outcome, PASS)

    def test_hanging_up_frees_nothing(self):
        """A held place is given back only when its timer fires."""
        self.throttle.max_pending = 1
        self.attempt(False)
        self.assertEqual(self.throttle.held_from("login", A), 1)
        self.clock.advance(0.49)
        refused = self.attempt(True)
        self.clock.advance(0.01)
        self.assertEqual(self.throttle.held_from("login", A), 0)
        self.clock.advance(8)
        self.assertEqual(refused[0].outcome, REFUSED)

    def test_total_cap_refuses(self):
        """Once max_pending_total answers are held, a source in backoff
        is refused unchecked."""
        self.throttle.max_pending_total = 2
        self.attempt(False, host="192.0.2.1")
        self.attempt(False, host="192.0.2.2")
        got = self.attempt(True, host="192.0.2.1")
        self.clock.advance(8)
        self.assertEqual(got[0].outcome, REFUSED)

    def test_close_cancels(self):
        got = self.attempt(False)
        self.throttle.close()
        self.clock.advance(10)
        self.assertEqual(got, [])


class BudgetTests(ThrottleCase):
    """The global failure budget."""

    def test_over_budget_holds_fresh_sources(self):
        """Beyond failure_budget failures a second, a fresh source's right
        password is held max_delay; a source that succeeded before is
        not; a second later the budget is met again."""
        self.throttle.failure_budget = 5
        self.attempt(True, host="198.51.100.1")  # known good
        for i in range(6):
            self.attempt(False, host=f"192.0.2.{i + 1}")
        got = self.attempt(True, host="203.0.113.9")
        self.assertEqual(got, [])
        self.assertEqual(self.attempt(True, host="198.51.100.1")[0].delay, 0)
        self.assertEqual(self.answered_after(got), 8)
        self.assertEqual(got[0].outcome, PASS)
        self.assertEqual(self.attempt(True, host="203.0.113.10")[0].delay, 0)

    def test_budget_off(self):
        self.throttle.failure_budget = 0
        for i in range(100):
            self.attempt(False, host=f"192.0.2.{i + 1}")
        self.assertEqual(self.attempt(True, host="203.0.113.9")[0].delay, 0)


class MemoryTests(ThrottleCase):
    """Bounded tables that keep the worst sources."""

    def test_sources_bounded(self):
        self.throttle.max_sources = 10
        self.throttle.failure_budget = 0
        for i in range(50):
            self.attempt(False, host=f"10.0.{i // 250}.{i % 250}")
        self.assertLessEqual(self.throttle.tracked_sources("login"), 10)

    def test_worst_source_survives_a_flood_of_newcomers(self):
        """A source with many failures is not forgotten when a stream of
        one-failure sources overflows the table."""
        self.throttle.max_sources = 10
        self.throttle.failure_budget = 0
        for _ in range(5):
            self.answered_after(self.attempt(False))
        for i in range(200):
            got = self.attempt(False, host=f"10.0.{i // 250}.{i % 250}")
            self.answered_after(got)
        self.assertEqual(self.throttle.failures_from("login", A), 5)

    def test_names_bounded(self):
        """Identities per source are capped; the rest share one count."""
        self.throttle.max_names = 4
        self.throttle.max_pending = 0
        for i in range(20):
            self.attempt(False, who=f"user{i}")
        self.clock.advance(10)
        self.assertEqual(self.throttle.failures_from("login", A), 20)
        record = self.throttle._sources["login"][A]
        self.assertLessEqual(len(record.names), 5)
