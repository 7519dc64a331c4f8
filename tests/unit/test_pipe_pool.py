"""The kernel splice's pipe pool: lent pipes are bounded, idle ones reused."""

import fcntl
import os

from twisted.trial.unittest import SynchronousTestCase

from labrelay.kernel_splice import PIPE_SIZE, PipePool

#: named in Python's fcntl since 3.10 (PyPy's is 3.9)
F_GETPIPE_SZ = getattr(fcntl, "F_GETPIPE_SZ", 1032)


class PipePoolTests(SynchronousTestCase):
    def pool(self, **kwargs):
        pool = PipePool(**kwargs)
        self.addCleanup(lambda: [pool._close(p) for p in pool._idle])
        return pool

    def test_pipes_are_large_and_non_blocking(self):
        pool = self.pool()
        r, w = pool.take()
        self.addCleanup(pool.discard, (r, w))
        self.assertEqual(fcntl.fcntl(w, F_GETPIPE_SZ), PIPE_SIZE)
        self.assertTrue(fcntl.fcntl(r, fcntl.F_GETFL) & os.O_NONBLOCK)

    def test_lending_is_bounded(self):
        """At the limit take() answers None; giving one back frees a slot."""
        pool = self.pool(limit=2)
        a, b = pool.take(), pool.take()
        self.assertIsNone(pool.take())
        self.assertEqual(pool.lent, 2)
        pool.give_back(a)
        c = pool.take()
        self.assertEqual(c, a)  # the idle pipe is reused
        pool.discard(b)
        pool.discard(c)
        self.assertEqual(pool.lent, 0)

    def test_idle_pipes_beyond_the_pool_are_closed(self):
        pool = self.pool(size=1)
        a, b = pool.take(), pool.take()
        pool.give_back(a)
        pool.give_back(b)
        self.assertEqual(pool._idle, [a])
        self.assertRaises(OSError, os.fstat, b[0])
