# -*- test-case-name: tests.unit.test_writethrough -*-
"""
labrelay.writethrough on a transport that has no socket to write to at
once.
"""

from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from labrelay.writethrough import write_now


class FallbackTests(SynchronousTestCase):
    def test_other_transports_use_write(self):
        """A transport that is not a TCP socket gets an ordinary write."""
        transport = StringTransport()
        write_now(transport, b"abc")
        self.assertEqual(transport.value(), b"abc")
