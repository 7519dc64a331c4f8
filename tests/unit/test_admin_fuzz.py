# -*- test-case-name: tests.unit.test_admin_fuzz -*-
"""
The client's admin API as a hypothesis property, with the fuzz target of
:mod:`tests.support.fuzz.admin`: any bytes on an admin connection are
answered or closed without an error, and change state only through
requests that pass the policy.
"""

from hypothesis import given, settings
from twisted.trial.unittest import SynchronousTestCase

from ..support.fuzz.admin import ADMIN
from ..support.fuzz.core import corpus_of, inputs


class AdminProperties(SynchronousTestCase):
    """The admin API on random and mutated requests."""

    @settings(max_examples=200, deadline=None)
    @given(inputs(ADMIN))
    def test_admin(self, sample):
        """Any bytes get answers or a close, change state only
        through requests that pass the Host/Origin/method/credentials
        policy, never show a secret, and leave no timer."""
        ADMIN.run(*sample)

    def test_corpus_outcomes(self):
        """The corpus reaches both refusals and permitted changes: the
        target can see what it checks."""
        outcomes = {ADMIN.run(data, []) for data in corpus_of(ADMIN)}
        text = " | ".join(sorted(outcomes))
        for expected in ("421", "403", "reload", "stop", "config"):
            self.assertIn(expected, text)
