# -*- test-case-name: tests.unit.test_route_fuzz -*-
"""
The vhost route table under random scripts of registrations, removals and
lookups (the driver is :mod:`tests.support.fuzz.routes`): the table agrees
with a naive model line by line and keeps its invariants.
"""

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from ..support.fuzz.core import mutate
from ..support.fuzz.routes import ROUTES


class RouteTableProperties(SynchronousTestCase):
    @settings(max_examples=300, deadline=None)
    @given(
        st.one_of(
            st.binary(max_size=512),
            st.builds(
                lambda seed, rng: mutate(seed, rng, ROUTES.corpus(), ROUTES.tokens),
                st.sampled_from(ROUTES.corpus()),
                st.randoms(use_true_random=False),
            ),
        )
    )
    def test_scripts(self, data):
        """Any script: the table agrees with the naive model line by line
        and keeps its invariants."""
        ROUTES.run(data, [])

    def test_corpus(self):
        """The corpus scripts exercise every kind of outcome."""
        outcomes = ",".join(ROUTES.run(c, []) for c in ROUTES.corpus())
        for kind in ("a:added", "a:conflict", "r:", "l:True", "l:False"):
            self.assertIn(kind, outcomes)

    def test_too_long_beats_conflict(self):
        """A registration both repeating a key and naming a too-long
        location is refused as too long (found by tools/fuzz.py: the
        table and the model must agree on which refusal)."""
        script = b"a 1 * /a,/a,/" + b"o" * 600 + b" \nl h /a "
        self.assertEqual(ROUTES.run(script, []), "a:too long,l:False")
