# -*- test-case-name: tests.unit.test_daemon_mode -*-
"""
What a start-up failure is, so that twistd's daemon parent and a foreground
twistd both report it as one line (the processes themselves are run by
tests.system.test_daemon_mode).
"""

from twisted.trial.unittest import SynchronousTestCase


class StartupFailureTests(SynchronousTestCase):
    def test_is_exception_and_system_exit(self):
        """twistd's daemon parent hears of an Exception only; a foreground
        twistd ends on SystemExit with its text and no traceback."""
        from labrelay.listeners import StartupFailure

        failure = StartupFailure("labrelay-server: cannot listen on x:1: y")
        self.assertIsInstance(failure, Exception)
        self.assertIsInstance(failure, SystemExit)
        self.assertEqual(failure.code, "labrelay-server: cannot listen on x:1: y")
