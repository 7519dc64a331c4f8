# -*- test-case-name: tests.unit.test_workpool -*-
"""Tests for labrelay.server.workpool: pooling, replenishing and timeouts."""

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from labrelay.errors import NoWorkConnection
from labrelay.server.workpool import WorkConnPool


class FakeWork:
    def __init__(self):
        self.discarded = None

    def discard(self, why):
        self.discarded = why


class WorkConnPoolTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.requests = []
        self.pool = WorkConnPool(
            self.clock, lambda: self.requests.append(1), capacity=2, timeout=10
        )
        self.addCleanup(lambda: self.assertEqual(self.clock.getDelayedCalls(), []))

    def test_pooled_connection_is_given_and_replenished(self):
        """A pooled connection is handed out at once and one more is requested."""
        work = FakeWork()
        self.pool.put(work)
        self.assertIs(self.successResultOf(self.pool.get()), work)
        self.assertEqual(len(self.requests), 1)
        self.assertEqual(self.pool.idle_count, 0)

    def test_waiter_gets_next_connection(self):
        """With an empty pool, get() asks for one and waits for it."""
        d = self.pool.get()
        self.assertNoResult(d)
        self.assertEqual(len(self.requests), 1)
        work = FakeWork()
        self.pool.put(work)
        self.assertIs(self.successResultOf(d), work)
        # one to get it, one to replace it (as frp)
        self.assertEqual(len(self.requests), 2)

    def test_timeout(self):
        """No connection within the timeout fails with NoWorkConnection."""
        d = self.pool.get()
        self.clock.advance(9.9)
        self.assertNoResult(d)
        self.clock.advance(0.2)
        self.failureResultOf(d, NoWorkConnection)
        # a late connection is then kept for the next user
        work = FakeWork()
        self.pool.put(work)
        self.assertEqual(self.pool.idle_count, 1)

    def test_cancelled_waiter_is_forgotten(self):
        """A user that leaves while waiting does not take the next connection."""
        d = self.pool.get()
        d.addErrback(lambda f: None)
        d.cancel()
        work = FakeWork()
        self.pool.put(work)
        self.assertEqual(self.pool.idle_count, 1)

    def test_capacity(self):
        """Connections beyond the capacity are closed, not kept."""
        works = [FakeWork() for _ in range(3)]
        for work in works:
            self.pool.put(work)
        self.assertEqual(self.pool.idle_count, 2)
        self.assertEqual(works[2].discarded, "work connection pool is full")

    def test_discard(self):
        """A pooled connection that died is never handed out."""
        dead, alive = FakeWork(), FakeWork()
        self.pool.put(dead)
        self.pool.put(alive)
        self.pool.discard(dead)
        self.assertIs(self.successResultOf(self.pool.get()), alive)

    def test_close(self):
        """Closing discards idle connections and fails waiters and later gets."""
        work = FakeWork()
        self.pool.put(work)
        self.pool.get()  # take it
        d = self.pool.get()
        self.pool.close()
        self.failureResultOf(d, NoWorkConnection)
        self.assertRaises(NoWorkConnection, self.pool.get)
        late = FakeWork()
        self.pool.put(late)
        self.assertIsNotNone(late.discarded)
