# -*- test-case-name: tests.unit.test_sdnotify -*-
"""
A Notifier without ``$NOTIFY_SOCKET`` sends nothing and never fails
(tests.integration.test_sdnotify sends to real sockets).
"""

from twisted.trial.unittest import SynchronousTestCase

from labrelay.sdnotify import Notifier


class NotifierTests(SynchronousTestCase):
    """What a Notifier does without a socket."""

    def test_nothing_without_socket(self):
        """Without NOTIFY_SOCKET nothing is sent and nothing fails."""
        notifier = Notifier.from_environ({})
        self.assertFalse(notifier.enabled)
        for send in (notifier.ready, notifier.reloading, notifier.stopping):
            self.assertFalse(send())
        self.assertFalse(notifier.status("x"))
        self.assertEqual(notifier.sent, [])
