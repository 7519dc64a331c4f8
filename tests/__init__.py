"""labrelay test suite (run with python -m twisted.trial tests)."""
