# -*- test-case-name: tests.unit.test_secrets -*-
"""
Private keys never reach error messages.
"""

import os

from twisted.trial.unittest import SynchronousTestCase

from labrelay.tls import TLSConfigError, server_tls_options

from ..support.certs import self_signed_certificate, server_certificate


class SecretsTests(SynchronousTestCase):
    """Secrets stay out of error messages."""

    def test_private_key_not_in_errors(self):
        """A key that does not match its certificate is named, not shown."""
        directory = self.mktemp()
        os.makedirs(directory)
        cert_path, _ = server_certificate(("relay.test",)).write_to(directory, "server")
        _, other_key = self_signed_certificate().write_to(directory, "other")
        with open(other_key, "rb") as f:
            key_text = f.read().decode()
        with self.assertRaises(TLSConfigError) as caught:
            server_tls_options(cert_path, other_key)
        message = str(caught.exception)
        self.assertIn(other_key, message)
        self.assertNotIn("PRIVATE KEY", message)
        body = "".join(key_text.splitlines()[1:-1])
        self.assertNotIn(body[:24], message)
